"""TRL trainers and callbacks that add a curriculum (they depend on ``sec_rl.curriculum``, never the reverse)."""

from sec_rl.trainers.callbacks import CurriculumCallback, curriculum_history, plot_curriculum_history
from sec_rl.trainers.curriculum_args import CurriculumArguments
from sec_rl.trainers.grpo_config import SECGRPOConfig
from sec_rl.trainers.grpo_trainer import SECGRPOTrainer
from sec_rl.trainers.mixin import CurriculumMixin, GRPOCurriculumMixin
from sec_rl.trainers.progress import ConciseProgressCallback, use_concise_progress
from sec_rl.trainers.sft_config import SECSFTConfig
from sec_rl.trainers.sft_trainer import SECSFTTrainer, SFTCurriculumMixin
from sec_rl.trainers.web_grpo import SECWebGRPOConfig, SECWebGRPOTrainer, WebAgentArguments, WebAgentMixin

__all__ = [
    "ConciseProgressCallback",
    "CurriculumArguments",
    "CurriculumCallback",
    "CurriculumMixin",
    "GRPOCurriculumMixin",
    "SECGRPOConfig",
    "SECGRPOTrainer",
    "SECSFTConfig",
    "SECSFTTrainer",
    "SECWebGRPOConfig",
    "SECWebGRPOTrainer",
    "SFTCurriculumMixin",
    "WebAgentArguments",
    "WebAgentMixin",
    "curriculum_history",
    "plot_curriculum_history",
    "use_concise_progress",
]
