"""The KKT attack's validated configuration: its optimiser, multipliers, prior, restart search and selection."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from auditkit.attacks.base import AttackConfig

SEARCH_RANGES = {
    "init_scale": [1e-3, 0.05],
    "lr_x": [3e-3, 3e-2],
    "lambda_min": [0.01, 0.5],
    "alpha": [10.0, 100.0],
}
Range = Annotated[list[float], Field(min_length=2, max_length=2)]
LOG_UNIFORM = ("init_scale", "lr_x")
# upper bounds far past any useful value, so that no setting overflows float32 (1e300 would: a traceback)
MAX_RATE = 100.0  # lr_x, lr_lambda
MAX_INIT_SCALE = 100.0  # the candidates' starting spread, in pixels
MAX_WEIGHT = 1e6  # alpha, lambda_min and the loss terms' weights
SEARCH_LIMITS = {"init_scale": MAX_INIT_SCALE, "lr_x": MAX_RATE, "lambda_min": MAX_WEIGHT, "alpha": MAX_WEIGHT}
DIVERGED = 1e6  # a restart whose loss grows past this multiple of its starting loss has diverged
SELECTION_RULES = {
    "kkt_residual": "restarts ranked by how much of the weights their candidates explain (KKT residual, "
    "multipliers refitted, exact ReLU): what an outside attacker has",
    "kkt_loss": "restarts ranked by their attack loss (what an outside attacker has; fair only between "
    "restarts with the same settings)",
    "ground_truth": "restarts ranked by how close their candidates come to the training set (mean NCC "
    "distance of the 10 best matches, as the authors' sweeps did): the auditor's view, not an outsider's",
}
SelectRule = Literal[tuple(SELECTION_RULES)]


class KKTConfig(AttackConfig):
    """Attack hyperparameters, for YAML presets and the Python API alike.

    Defaults: the built-in sweep around the recipe measured on CPU victims. search "random": restart 0
    keeps the configured init_scale, lr_x, lambda_min and alpha (the measured recipe); every other
    restart draws its own from ``search_ranges`` (log-uniform for init_scale and lr_x), and all
    restarts advance as one batched program. At ``early_stop_step`` the best ``early_stop_keep``
    fraction (by the ``select`` rule) goes on; at the end the ``select_top`` best are pooled.
    """

    name: Literal["kkt"] = "kkt"
    steps: int = Field(8000, ge=0, le=100_000_000, description="optimisation steps per restart")
    candidates_per_sample: int = Field(
        2, gt=0, le=1000, description="m = candidates_per_sample * n, split evenly over the classes"
    )
    restarts: int = Field(4, gt=0, le=1024, description="restarts advanced together as one batched program")
    optimizer: Literal["adam", "sgd"] = "adam"
    lr_x: float = Field(0.01, gt=0, le=MAX_RATE)
    lr_lambda: float = Field(0.01, gt=0, le=MAX_RATE)
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description="constant; or cosine: both learning rates decay from their value to lr_final of it over the steps",
    )
    lr_final: float = Field(0.05, gt=0, le=1, description="cosine only: the last step's fraction of the learning rates")
    refine_steps: int = Field(
        0,
        ge=0,
        le=100_000_000,
        description="the last refine_steps steps run in float64 (victim weights, candidates, multipliers and "
        "optimiser state promoted); 0 = none; nothing changes when the attack already runs in float64",
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    init_scale: float = Field(
        0.01, gt=0, le=MAX_INIT_SCALE, description="x0 ~ N(0, init_scale^2) (init public: added to the image)"
    )
    init: Literal["random", "public"] = Field(
        "random",
        description="random: candidates start near 0; public: each starts at a public (non-member) image the victim "
        "assigns to the candidate's class (the auditor draws them from the identification pool, so a candidate that "
        "never moves identifies a non-member, never a member)",
    )
    lambda_init: Literal["uniform", "ones"] = "uniform"
    multiclass_margins: Literal["all", "runner_up"] = Field(
        "all",
        description="C outputs: all, one multiplier per other class (every constraint of the multiclass "
        "max-margin problem: 43 against 8 of 50 identified on mnist10_quick at n = 50); runner_up, one per "
        "candidate on the margin against its runner-up class",
    )
    lambda_sign: Literal["positive", "free"] = Field(
        "positive",
        description="positive: lambda >= 0 kept by the lambda_min hinge (a max-margin KKT point); free: signed "
        "multipliers, no hinge, initialised N(0, 1) (Buzaglo et al. 2023's general-loss variant)",
    )
    lambda_min: float = Field(0.1, ge=0, le=MAX_WEIGHT, description="multipliers below it are pushed up by the hinge")
    lambda_weight: float = Field(5.0, ge=0, le=MAX_WEIGHT)
    alpha: float = Field(
        40.0, gt=0, le=MAX_WEIGHT, description="sharpness of the smoothed ReLU derivative sigmoid(alpha z)"
    )
    alpha_relative: bool = Field(True, description="alpha / median |pre-activation| of the victim")
    prior: Literal["tight", "box"] = Field("tight", description="tight: valid pixel range per pixel; box: [-1, 1]")
    prior_weight: float = Field(1.0, ge=0, le=MAX_WEIGHT)
    log_every: int = Field(50, gt=0)
    search: Literal["off", "random"] = "random"
    search_ranges: dict[Literal["init_scale", "lr_x", "lambda_min", "alpha"], Range] = Field(
        default_factory=lambda: dict(SEARCH_RANGES), description="[low, high] per searched setting"
    )
    early_stop_step: int = Field(0, ge=0, le=100_000_000, description="0 = no early stop")
    early_stop_keep: float = Field(0.5, gt=0, le=1)
    select: SelectRule = "kkt_residual"
    select_top: int = Field(0, ge=0, le=1024, description="restarts pooled at the end; 0 = every survivor")
    passes: int = Field(
        1,
        ge=1,
        le=64,
        description="deflation: searches of `steps` steps each, every one after the first on the weights less what "
        "the earlier ones' frozen candidates explain (auditkit.attacks.kkt.deflation); 1 = one search",
    )
    compile: bool = Field(
        False,
        description="each step's losses and their backward through torch.compile (on a GPU as CUDA graphs: one "
        "replay instead of hundreds of kernel launches); a one-off compilation; MLP victims only",
    )
    deflate_fraction: float = Field(
        0.5, gt=0, le=1, description="the share of a pass's best restart frozen, largest multipliers first"
    )

    @field_validator("search_ranges")
    @classmethod
    def _ordered_positive(cls, ranges: dict) -> dict:
        for key, (low, high) in ranges.items():
            if not 0 < low <= high <= SEARCH_LIMITS[key]:
                raise ValueError(f"{key}: expected 0 < low <= high <= {SEARCH_LIMITS[key]:g}, got [{low}, {high}]")
        return {**SEARCH_RANGES, **ranges}
