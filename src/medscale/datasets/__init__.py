"""Dataset adapters as data: one YAML spec per dataset, plus the label maps."""

from medscale.datasets.spec import DatasetSpec, list_datasets, load_dataset_spec, parse_dataset_spec

__all__ = ["DatasetSpec", "list_datasets", "load_dataset_spec", "parse_dataset_spec"]
