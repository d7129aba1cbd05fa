"""Element types: reshard's names (f32, bf16, ...) and NumPy's, torch's and JAX's."""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

# reshard name -> NumPy dtype of the storage. NumPy has no bfloat16: its 16 bits go in uint16
# (as the C++ DistArray keeps them), unless ml_dtypes is installed.
_NUMPY = {
    "f64": np.float64, "f32": np.float32, "f16": np.float16, "bf16": np.uint16,
    "i64": np.int64, "i32": np.int32, "i16": np.int16, "i8": np.int8, "u8": np.uint8,
}
_FROM_NAME = {
    "float64": "f64", "double": "f64", "float32": "f32", "float": "f32", "float16": "f16", "half": "f16",
    "bfloat16": "bf16", "int64": "i64", "long": "i64", "int32": "i32", "int": "i32", "int16": "i16",
    "short": "i16", "int8": "i8", "uint8": "u8",
}


def dtype_name(dtype: Any) -> str:
    """reshard's name for a dtype given as "f32", a NumPy/JAX dtype, a torch dtype, or a Type."""
    if isinstance(dtype, str):
        if dtype in _NUMPY:
            return dtype
        name = dtype
    elif hasattr(dtype, "dtype") and isinstance(getattr(dtype, "dtype"), str):
        return dtype_name(dtype.dtype)  # a reshard.Type
    else:
        name = str(dtype)
        if name.startswith("torch."):
            name = name[len("torch."):]
        else:
            try:
                name = np.dtype(dtype).name
            except TypeError:
                pass
    if name in _FROM_NAME:
        return _FROM_NAME[name]
    raise ValueError(f"reshard has no element type for {dtype!r}; it has f64, f32, f16, bf16, i64, i32, i16, i8, u8")


def numpy_dtype(dtype: Any) -> np.dtype:
    """The NumPy dtype that stores reshard dtype `dtype` (bf16: ml_dtypes.bfloat16 if installed, else uint16)."""
    name = dtype_name(dtype)
    if name == "bf16":
        ml = sys.modules.get("ml_dtypes")
        if ml is not None:
            return np.dtype(ml.bfloat16)
    return np.dtype(_NUMPY[name])


def torch_dtype(dtype: Any):
    """The torch dtype of reshard dtype `dtype` (imports torch)."""
    import torch

    return {
        "f64": torch.float64, "f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16,
        "i64": torch.int64, "i32": torch.int32, "i16": torch.int16, "i8": torch.int8, "u8": torch.uint8,
    }[dtype_name(dtype)]
