"""The preprocessed cache: writing it (``imaseg preprocess``), patient-grouped splits, reading it back."""

from imaseg.cache.case_meta import CaseMeta
from imaseg.cache.manifest import MANIFEST_NAME, DataShape, Manifest, read_manifest, sample_id
from imaseg.cache.reader import CachedCase, CaseStore, SampleSet, from_slices, to_slices
from imaseg.cache.split import FoldSplit, assign_folds, check_disjoint, patient_groups, split_for_fold
from imaseg.cache.writer import preprocess_dataset

__all__ = [
    "MANIFEST_NAME",
    "CachedCase",
    "CaseMeta",
    "CaseStore",
    "DataShape",
    "FoldSplit",
    "Manifest",
    "SampleSet",
    "assign_folds",
    "check_disjoint",
    "from_slices",
    "patient_groups",
    "preprocess_dataset",
    "read_manifest",
    "sample_id",
    "split_for_fold",
    "to_slices",
]
