"""Write an F32 copy of a GGUF model with llama.cpp's own quantizer (used for the parity fixture:
llama.cpp on F32 weights is the reference for our dense f32 path, free of Q8_1 activation
rounding). Usage: dequantize_gguf.py IN.gguf OUT.gguf"""
import sys

import llama_cpp


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    if rc != 0:
        raise SystemExit(f"llama_model_quantize failed with {rc}")
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
