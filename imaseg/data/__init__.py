"""NIfTI ingest: discover pairs in any common layout, check them, read them with the true spacing."""

from imaseg.data.check import CaseReport, DatasetReport, check_dataset, format_report, inspect_case, validate_case
from imaseg.data.discover import DatasetInfo, discover, discover_with_info
from imaseg.data.errors import DataError
from imaseg.data.nifti import NiftiVolume, read_nifti, write_nifti

__all__ = [
    "CaseReport",
    "DataError",
    "DatasetInfo",
    "DatasetReport",
    "NiftiVolume",
    "check_dataset",
    "discover",
    "discover_with_info",
    "format_report",
    "inspect_case",
    "read_nifti",
    "validate_case",
    "write_nifti",
]
