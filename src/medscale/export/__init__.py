"""Exports of a training run's model for deployment: `export_onnx` writes an ONNX file that
ONNX Runtime runs (CPU, or GPU where present) with the run's processing recorded beside it,
and `medscale predict --model MODEL.onnx` uses it."""

from __future__ import annotations

from medscale.export.onnx import EXPORT_FORMAT, EXPORT_FORMAT_VERSION, export_onnx

__all__ = ["EXPORT_FORMAT", "EXPORT_FORMAT_VERSION", "export_onnx"]
