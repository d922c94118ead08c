"""`tamrin verify-resume`: check that a recipe resumes exactly before trusting it with a long run.

verify.py runs and compares the processes; job.py is one of them
(`python -m tamrin.tools.verify_resume.job SPEC.json`).
"""

from __future__ import annotations

from tamrin.tools.verify_resume.verify import (
    DEFAULT_STEPS,
    Divergence,
    VerifyResult,
    VerifyResumeError,
    compare_runs,
    verify_resume,
)

__all__ = ["DEFAULT_STEPS", "Divergence", "VerifyResult", "VerifyResumeError", "compare_runs", "verify_resume"]
