"""Small helpers shared by every layer: atomic writes, argument checks, seeding, logging."""

from imaseg.utils.atomic import atomic_path, atomic_write_json, atomic_write_text
from imaseg.utils.checks import check_choice, check_non_negative, check_positive_int, check_probability
from imaseg.utils.seeding import derive_seed, make_generator, seed_everything

__all__ = [
    "atomic_path",
    "atomic_write_json",
    "atomic_write_text",
    "check_choice",
    "check_non_negative",
    "check_positive_int",
    "check_probability",
    "derive_seed",
    "make_generator",
    "seed_everything",
]
