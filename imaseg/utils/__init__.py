"""Small helpers shared by every layer: atomic writes, argument checks, seeding, logging.

Import the torch-dependent ones (``imaseg.utils.seeding``) from their module; this package itself stays
free of torch so the report layer can use it anywhere.
"""

from imaseg.utils.atomic import atomic_path, atomic_write_json, atomic_write_text
from imaseg.utils.checks import check_choice, check_non_negative, check_positive_int, check_probability

__all__ = [
    "atomic_path",
    "atomic_write_json",
    "atomic_write_text",
    "check_choice",
    "check_non_negative",
    "check_positive_int",
    "check_probability",
]
