"""The scripted MiniWoB++ expert: parsing the rendered prompt, the exact action per page, both layouts, failures.

The pages below are AXTree texts copied from BrowserGym's MiniWoB++ observations (seeds 3-4), rendered into
prompts with the real :func:`render_messages` / :func:`render_observation`. One test runs the teacher in
Chromium through :func:`evaluate` (marked ``browser``).
"""

from __future__ import annotations

import pytest
from helpers.runs import browser_missing

from sec_rl.pipeline.scripted import (
    SOLVERS,
    AXPage,
    PageParseError,
    ScriptedTeacher,
    read_turn,
    solve,
)
from sec_rl.pipeline.teachers import Reply
from sec_rl.web.actions import parse_action
from sec_rl.web.observation import Observation, PromptConfig, render_messages, render_observation
from sec_rl.web.tasks import TRAIN_TASKS

URL = "file:///x/site-packages/miniwob/html/miniwob/{task}.html"


def root(task: str, title: str = "Task") -> str:
    return f"RootWebArea '{title}', focused, url='{URL.format(task=task)}'"


DIALOG_2 = f"""{root("click-dialog-2", "Click Dialog Task")}
\t[17] dialog '', modal=False, describedby='dialog'
\t\tStaticText ''
\t\t[20] button 'Close'
\t\t\tInlineTextBox 'Close'
\t\t[24] paragraph ''
\t\t\tStaticText 'Sed. Mi libero sagittis,. Eros.'
\t\t[27] button 'Cancel', focused
\t\t[28] button 'OK'"""

ENTER_TEXT = f"""{root("enter-text")}
\t[14] textbox ''{{value}}
\t[15] button 'Submit'"""

LOGIN = f"""{root("login-user")}
\t[14] paragraph ''
\t\t[15] LabelText ''
\t\t\tStaticText 'Username'
\t\t[16] textbox ''{{user}}
\t[17] paragraph ''
\t\t[18] LabelText ''
\t\t\tStaticText 'Password'
\t\t[19] textbox ''{{password}}
\t[20] button 'Login'"""

SEQUENCE = f"""{root("click-button-sequence")}
\t[12] button 'ONE'
\t[13] button 'TWO'"""

ODD_EVEN = f"""{root("odd-or-even")}
\t[17] button 'Odd'
\tStaticText '-1'
\t[21] button 'Even'
\t[24] button 'Odd'
\tStaticText '10'
\t[28] button 'Even'
\t[37] button 'Submit'"""

CHOOSE_LIST = f"""{root("choose-list")}
\t[13] combobox '' value='{{value}}', hasPopup='menu', expanded=False
\t\tMenuListPopup ''
\t\t\t[14] option 'Madelene', selected=True
\t\t\t[17] option 'Teddy', selected=False
\t[18] button 'Submit'"""

CHECKBOXES = f"""{root("click-checkboxes-transfer")}
\t[17] LabelText ''
\t\t[18] checkbox 'tlhR', checked='{{a}}'
\t\tStaticText 'tlhR'
\t[20] LabelText ''
\t\t[21] checkbox 'eGhdQ', checked='{{b}}'
\t\tStaticText 'eGhdQ'
\t[33] button 'Submit'"""

READ_TABLE_2 = f"""{root("read-table-2")}
\t[14] table ''
\t\t[15] row ''
\t\t\t[16] cell 'Country'
\t\t\t[17] cell 'Czech Republic'
\t\t[24] row ''
\t\t\t[25] cell 'First name'
\t\t\t[26] cell 'Ruthe'
\t[32] LabelText ''
\t\tStaticText 'First name:'
\t[33] textbox ''{{first}}
\t[35] LabelText ''
\t\tStaticText 'Country:'
\t[36] textbox ''
\t[37] button 'Submit'"""


def per_step(goal: str, axtree: str, history: list[str] | None = None, error: str = "") -> list[dict[str, str]]:
    """A per-step prompt as the evaluator builds it (system + user, the last actions listed)."""
    return render_messages(Observation(goal, axtree, last_action_error=error), history or [])


def episode(goal: str, pages: list[str], replies: list[str]) -> list[dict[str, str]]:
    """An episode-layout conversation: system, user, assistant, user, ... (pages alone after the first turn)."""
    messages = render_messages(Observation(goal, pages[0]), [])
    for page, reply in zip(pages[1:], replies, strict=True):
        messages += [
            {"role": "assistant", "content": reply},
            {"role": "user", "content": render_observation(Observation(goal, page), ())},
        ]
    return messages


def action_of(messages: list[dict[str, str]]) -> str:
    text = ScriptedTeacher().act_batch([messages])[0]
    return str(parse_action(text))  # every reply must parse


# -- the page ----------------------------------------------------------------------------------------
def test_axtree_lines_parse_into_nodes_with_values_and_flags():
    page = AXPage.parse(CHOOSE_LIST.format(value="Teddy") + "\n[... page truncated: 12 more characters not shown ...]")
    assert page.task == "choose-list"
    box = page.one("combobox")
    assert (box.bid, box.role, box.name, box.value) == ("13", "combobox", "", "Teddy")
    assert box.attrs["hasPopup"] == "menu" and box.flag("expanded") is False
    options = page.find("option")
    assert [(o.bid, o.name, o.flag("selected")) for o in options] == [("14", "Madelene", True), ("17", "Teddy", False)]
    assert page.parent(options[0]).role == "MenuListPopup"
    assert [n.role for n in page.descendants(box)] == ["MenuListPopup", "option", "option"]
    assert len(page.nodes) == 6  # the truncation marker is not a node


def test_names_with_quotes_and_numeric_values_parse():
    text = f"{root('x')}\n\t[5] button \"don't stop\"\n\t[6] spinbutton 'Hours' value=8, focused, valuemin=1"
    page = AXPage.parse(text)
    button, spin = page.find("button")[0], page.find("spinbutton")[0]
    assert button.name == "don't stop"
    assert spin.value == "8" and spin.flag("focused") and spin.attrs["valuemin"] == 1


def test_page_without_nodes_is_refused():
    with pytest.raises(PageParseError, match="no accessibility-tree lines"):
        AXPage.parse("<html><body>hello</body></html>")


def test_read_turn_per_step_takes_goal_history_and_error():
    messages = per_step("Click button ONE, then click button TWO.", SEQUENCE, ["click('12')"], error="Timeout 500ms")
    turn = read_turn(messages)
    assert turn.goal == "Click button ONE, then click button TWO."
    assert turn.history == ("click('12')",) and turn.error == "Timeout 500ms"
    assert turn.page.task == "click-button-sequence"


def test_read_turn_episode_takes_history_from_assistant_turns():
    messages = episode("g", [SEQUENCE, SEQUENCE], ["Thought: first ONE.\nAction: click(12)"])
    assert read_turn(messages).history == ("click('12')",)  # canonical form, as the environment records it


# -- exact actions -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("label", "bid"), [("x", "20"), ("OK", "28"), ("Cancel", "27")])
def test_click_dialog_2_clicks_the_labelled_button(label, bid):
    assert action_of(per_step(f'Click the button in the dialog box labeled "{label}".', DIALOG_2)) == f"click('{bid}')"


def test_enter_text_fills_then_submits_once_the_field_shows_the_text():
    goal = 'Enter "Cheree" into the text field and press Submit.'
    assert action_of(per_step(goal, ENTER_TEXT.format(value=""))) == "fill('14', 'Cheree')"
    assert action_of(per_step(goal, ENTER_TEXT.format(value=" value='Cher'"))) == "fill('14', 'Cheree')"
    assert action_of(per_step(goal, ENTER_TEXT.format(value=" value='Cheree'"))) == "click('15')"


def test_login_reads_the_password_field_as_bullets():
    goal = 'Enter the username "kenda" and the password "Ttlh" into the text fields and press login.'
    empty = LOGIN.format(user="", password="")
    user_done = LOGIN.format(user=" value='kenda'", password="")
    both_done = LOGIN.format(user=" value='kenda'", password=" value='\u2022\u2022\u2022\u2022'")
    short = LOGIN.format(user=" value='kenda'", password=" value='\u2022\u2022'")
    assert action_of(per_step(goal, empty)) == "fill('16', 'kenda')"
    assert action_of(per_step(goal, user_done)) == "fill('19', 'Ttlh')"
    assert action_of(per_step(goal, short)) == "fill('19', 'Ttlh')"
    assert action_of(per_step(goal, both_done)) == "click('20')"


def test_button_sequence_in_both_layouts():
    goal = "Click button ONE, then click button TWO."
    assert action_of(per_step(goal, SEQUENCE)) == "click('12')"
    assert action_of(per_step(goal, SEQUENCE, ["click('12')"])) == "click('13')"
    first = ScriptedTeacher().act_batch([per_step(goal, SEQUENCE)])[0]
    assert action_of(episode(goal, [SEQUENCE, SEQUENCE], [first])) == "click('13')"


def test_odd_or_even_follows_its_plan_from_the_last_action():
    goal = "Mark the numbers below as odd or even and press submit when done."
    # -1 is odd (the Odd button before it, 17), 10 is even (the Even button after it, 28), then Submit (37)
    expected = ["click('17')", "click('28')", "click('37')"]
    history: list[str] = []
    for action in expected:
        assert action_of(per_step(goal, ODD_EVEN, history)) == action
        history.append(action)
    # per-step prompts list only the last actions: the last one is enough to know where the plan stands
    assert action_of(per_step(goal, ODD_EVEN, ["noop()", "click('28')"])) == "click('37')"


def test_choose_list_selects_then_submits():
    goal = "Select Teddy from the list and click Submit."
    assert action_of(per_step(goal, CHOOSE_LIST.format(value="Madelene"))) == "select_option('13', 'Teddy')"
    assert action_of(per_step(goal, CHOOSE_LIST.format(value="Teddy"))) == "click('18')"


@pytest.mark.parametrize(
    ("goal", "states", "expected"),
    [
        ("Select eGhdQ and click Submit.", ("false", "false"), "click('21')"),
        ("Select eGhdQ and click Submit.", ("true", "true"), "click('18')"),  # uncheck the wrong one
        ("Select tlhR, eGhdQ and click Submit.", ("true", "true"), "click('33')"),
        ("Select nothing and click Submit.", ("false", "false"), "click('33')"),
    ],
)
def test_checkboxes_transfer(goal, states, expected):
    assert action_of(per_step(goal, CHECKBOXES.format(a=states[0], b=states[1]))) == expected


@pytest.mark.parametrize(
    ("equation", "x"),
    [("x + 3 = 10", 7), ("x - 2 = 99", 101), ("4 + x = 1", -3), ("9 - x = 20", -11)],
)
def test_simple_algebra_solves_for_x(equation, x):
    page = f"{root('simple-algebra')}\n\tStaticText '{equation}'\n\tStaticText 'x ='\n"
    page += "\t[16] textbox ''\n\t[17] button 'Submit'"
    goal = "Solve for x and type your answer into the textbox. Press Submit when done."
    assert action_of(per_step(goal, page)) == f"fill('16', '{x}')"


@pytest.mark.parametrize(("goal_time", "filled"), [("8:07 PM", "20:07"), ("12:30 AM", "00:30"), ("12:05 PM", "12:05")])
def test_enter_time_fills_24_hour_time(goal_time, filled):
    page = f"{root('enter-time')}\n\t[14] InputTime ''\n\t\t[14] spinbutton 'Hours' value=0\n\t[15] button 'Submit'"
    assert action_of(per_step(f"Enter {goal_time} as the time and press submit.", page)) == f"fill('14', '{filled}')"
    done = page.replace("InputTime ''", f"InputTime '' value='{filled}'")
    assert action_of(per_step(f"Enter {goal_time} as the time and press submit.", done)) == "click('15')"


def test_read_table_2_fills_each_labelled_field_from_the_table():
    goal = "Enter the value that corresponds with each label into the form and submit when done."
    assert action_of(per_step(goal, READ_TABLE_2.format(first=""))) == "fill('33', 'Ruthe')"
    assert action_of(per_step(goal, READ_TABLE_2.format(first=" value='Ruthe'"))) == "fill('36', 'Czech Republic')"


@pytest.mark.parametrize(
    ("goal", "shown", "expected"),
    [
        ("Generate a number greater than 5, then press submit.", "-", "click('14')"),
        ("Generate a number greater than 5, then press submit.", "5", "click('14')"),
        ("Generate a number greater than 5, then press submit.", "6", "click('15')"),
        ("Generate a number less than 7, then press submit.", "6", "click('15')"),
        ("Generate an odd number, then press submit.", "4", "click('14')"),
        ("Generate an even number, then press submit.", "0", "click('15')"),
    ],
)
def test_generate_number_until_the_condition_holds(goal, shown, expected):
    page = f"{root('generate-number')}\n\tStaticText '{shown}'\n\t[14] button 'Generate'\n\t[15] button 'Submit'"
    assert action_of(per_step(goal, page)) == expected


def test_spinner_counts_its_value_text_as_filled():
    page = f"{root('use-spinner')}\n\t[18] spinbutton 'Select a value:' value=0, valuetext='{{v}}'\n"
    page += "\t[25] button 'Submit'"
    goal = "Select -10 with the spinner and hit Submit."
    assert action_of(per_step(goal, page.format(v="0"))) == "fill('18', '-10')"
    assert action_of(per_step(goal, page.format(v="-10"))) == "click('25')"


def test_phone_book_pages_until_the_contact_shows():
    card = (
        f"{root('phone-book')}\n\t[16] heading '{{name}}'\n\tStaticText 'Phone:'\n\t[20] link '261-570-4173'\n"
        "\tStaticText 'Email:'\n\t[24] link 'jan@live.gov'\n\t[29] list ''\n\t\t[36] listitem ''\n\t\t\t[37] link '>'"
    )
    goal = "Find Janice in the contact book and click on their email."
    assert action_of(per_step(goal, card.format(name="Brittne"))) == "click('37')"
    assert action_of(per_step(goal, card.format(name="Janice"))) == "click('24')"


def test_copy_paste_finds_the_input_before_or_after_the_text_area():
    goal = "Copy the text in the textarea below, paste it into the textbox and press Submit."
    area = "textbox '' value='Vulputate neque lacus '"
    input_first = f"{root('copy-paste')}\n\t[14] textbox ''\n\t[15] {area}\n\t[16] button 'Submit'"
    input_last = f"{root('copy-paste')}\n\t[14] {area}\n\t[15] textbox ''\n\t[16] button 'Submit'"
    assert action_of(per_step(goal, input_first)) == "fill('14', 'Vulputate neque lacus ')"  # the trailing space kept
    assert action_of(per_step(goal, input_last)) == "fill('15', 'Vulputate neque lacus ')"
    both = input_first.replace("[14] textbox ''", f"[14] {area}")
    assert action_of(per_step(goal, both, ["fill('14', 'Vulputate neque lacus ')"])) == "click('16')"
    # both boxes hold text and no fill tells which one is the input: an honest noop
    assert action_of(per_step(goal, both)) == "noop()"


# -- failures ----------------------------------------------------------------------------------------
def test_unknown_task_gets_an_honest_noop():
    messages = per_step("Draw a circle.", f"{root('draw-circle')}\n\t[5] button 'Submit'")
    text = ScriptedTeacher().act_batch([messages])[0]
    assert str(parse_action(text)) == "noop()"
    assert "no script for task 'draw-circle'" in text


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [{"role": "system", "content": "hi"}],
        [{"role": "user", "content": "no sections at all"}],
        [{"role": "user", "content": "# Goal\nClick.\n\n# Current page (accessibility tree)\n<<garbage>>"}],
        render_messages(Observation("Click.", html="<button>x</button>"), (), PromptConfig(view="html")),
        per_step("Click button ONE.", f"{root('click-test-2')}\n\t[13] button 'TWO'"),  # the named button is absent
        per_step("Select Teddy from the list and click Submit.", f"{root('choose-list')}\n\t[18] button 'Submit'"),
        per_step("Mark the numbers below as odd or even.", f"{root('odd-or-even')}\n\t[37] button 'Submit'"),
    ],
)
def test_malformed_or_incomplete_pages_get_noop_not_a_crash(messages):
    (reply,) = ScriptedTeacher().generate([messages])
    assert str(parse_action(reply.text)) == "noop()"
    assert reply.text.startswith("Thought: I cannot") or "cannot solve" in reply.text


def test_html_view_is_named_in_the_reason():
    messages = render_messages(Observation("Click.", html="<button>x</button>"), (), PromptConfig(view="html"))
    assert "view='axtree'" in solve(messages).thought


# -- the teacher -------------------------------------------------------------------------------------
def test_teacher_identity_and_replies():
    teacher = ScriptedTeacher()
    assert teacher.name == "scripted-expert" and teacher.num_parameters == 0
    assert set(teacher.tasks) <= set(TRAIN_TASKS) and len(teacher.tasks) >= 15
    assert set(teacher.tasks) == set(SOLVERS)
    goal = 'Enter "Cheree" into the text field and press Submit.'
    replies = teacher.generate([per_step(goal, ENTER_TEXT.format(value="")), per_step("Click.", DIALOG_2)])
    assert all(isinstance(r, Reply) and r.prompt_tokens == 0 and r.completion_tokens == 0 for r in replies)
    assert replies[0].text.startswith("Thought: ") and "\nAction: fill('14', 'Cheree')" in replies[0].text


def test_restricted_teacher_waits_on_other_tasks_and_refuses_unknown_names():
    teacher = ScriptedTeacher(["enter-text"])
    assert teacher.tasks == ("enter-text",)
    assert str(parse_action(teacher.act_batch([per_step("Click.", DIALOG_2)])[0])) == "noop()"
    with pytest.raises(ValueError, match="no solver for \\['draw-circle'\\]"):
        ScriptedTeacher(["enter-text", "draw-circle"])


# -- in Chromium -------------------------------------------------------------------------------------
MISSING = browser_missing()


@pytest.mark.browser
@pytest.mark.skipif(MISSING is not None, reason=f"needs Chromium and BrowserGym: {MISSING}")
def test_teacher_solves_tasks_in_the_browser():
    from sec_rl.web.config import WebConfig
    from sec_rl.web.evaluate import evaluate

    tasks = ["click-dialog-2", "login-user", "odd-or-even", "read-table-2"]  # one to five steps each
    with ScriptedTeacher(tasks) as teacher:
        report = evaluate(teacher, tasks, [3], WebConfig(web_num_workers=2, web_layout="episode"))
    failed = {e.task: (e.actions, e.error) for e in report.episodes if not e.success}
    assert not failed, failed
    assert all(e.prompt_tokens == 0 and e.completion_tokens == 0 for e in report.episodes)
    assert report.overall.success_rate == 1.0


def test_text_world_teacher_solves_every_text_world_task():
    from sec_rl.pipeline.scripted import TextWorldTeacher
    from sec_rl.web.config import WebConfig
    from sec_rl.web.env import TextEnvironment
    from sec_rl.web.evaluate import evaluate

    teacher = TextWorldTeacher()
    assert set(teacher.tasks) == set(TextEnvironment.TASKS) and teacher.name == "scripted-text-world"
    report = evaluate(teacher, TextEnvironment.TASKS, range(20), WebConfig(web_env="text", web_num_workers=2))
    assert report.overall.success_rate == 1.0 and report.overall.episodes == 60
    with pytest.raises(ValueError, match="no solver for \\['click-test'\\]"):
        TextWorldTeacher(["click-test"])  # MiniWoB++'s expert and the text world's keep their own tables
