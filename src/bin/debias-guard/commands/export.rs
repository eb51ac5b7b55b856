//! `export-adapter`: a PEFT adapter as a llama.cpp GGUF adapter or merged GGUF model.

use crate::args::{ExportAdapterArgs, MergedType};
use candle_core::quantized::GgmlDType;
use debias_guard::Error;
use std::process::ExitCode;

/// Writes the adapter (or the merged model) to `--out`.
pub fn run(args: ExportAdapterArgs) -> debias_guard::Result<ExitCode> {
    let ExportAdapterArgs {
        model,
        adapter,
        out,
        merged,
        merged_type,
    } = args;
    let model = crate::model::resolve(model.as_deref())?;
    let peft = debias_guard::adapter::PeftAdapter::load(&adapter)?;
    let name = crate::file_name(&adapter);
    if merged {
        if debias_guard::hf::is_model_dir(&model) {
            return Err(Error::InvalidInput(
                "--merged needs a GGUF base; for a Hugging Face base, merge into the directory and convert it with llama.cpp's converter".into(),
            ));
        }
        let dtype = match merged_type {
            MergedType::F32 => GgmlDType::F32,
            MergedType::F16 => GgmlDType::F16,
            MergedType::Q8_0 => GgmlDType::Q8_0,
        };
        let base = debias_guard::gguf::GgufFile::open(&model)?;
        debias_guard::export::write_merged_gguf(&out, &base, &peft, &name, dtype)?;
    } else {
        let config = debias_guard::weights::DenseCheckpoint::load(&model)?.config;
        debias_guard::export::write_gguf_adapter(&out, &peft, &name, &config)?;
    }
    eprintln!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}
