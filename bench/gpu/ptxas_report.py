#!/usr/bin/env python3
"""Prints ptxas's resource report (registers, shared memory, stack frame, spills) for a .cu file
compiled by NVRTC for sm_90, and writes its PTX (NAME.cu.ptx) to the current folder, without a
GPU or nvcc:

    LD_LIBRARY_PATH=$(dirname $(find .venv -name 'libnvrtc.so.13')) \
        python3 bench/gpu/ptxas_report.py kernels/src/cuda/conv.cu [sm_90]

Uses libnvrtc through ctypes (libnvrtc-builtins must be on LD_LIBRARY_PATH too).
"""
import ctypes
import sys

lib = ctypes.CDLL("libnvrtc.so.13")
src = open(sys.argv[1], "rb").read()
prog = ctypes.c_void_p()
assert lib.nvrtcCreateProgram(ctypes.byref(prog), src, sys.argv[1].encode(), 0, None, None) == 0
arch = sys.argv[2] if len(sys.argv) > 2 else "sm_90"
opts = [f"--gpu-architecture={arch}".encode(), b"--std=c++17", b"--ptxas-options=-v"]
arr = (ctypes.c_char_p * len(opts))(*opts)
rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
n = ctypes.c_size_t()
lib.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
log = ctypes.create_string_buffer(n.value)
lib.nvrtcGetProgramLog(prog, log)
print("rc", rc)
print(log.value.decode())
n2 = ctypes.c_size_t()
lib.nvrtcGetPTXSize(prog, ctypes.byref(n2)); ptx = ctypes.create_string_buffer(n2.value); lib.nvrtcGetPTX(prog, ptx)
open(sys.argv[1].rsplit("/", 1)[-1] + ".ptx", "w").write(ptx.value.decode())
