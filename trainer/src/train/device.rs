//! Where training runs: the CPU (`flex`) or a GPU backend chosen at run time.

use crate::error::{Error, Result};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// Where the tensors live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// burn's pure-Rust `flex` CPU backend.
    Cpu,
    /// A GPU through Vulkan (cargo feature `vulkan`).
    Vulkan,
    /// An NVIDIA GPU through CUDA (cargo feature `cuda`).
    Cuda,
}

impl DeviceChoice {
    /// The autodiff-enabled device, or an error naming the cargo feature the build lacks.
    pub fn device(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => cpu_device(),
            DeviceChoice::Vulkan => vulkan_device(),
            DeviceChoice::Cuda => cuda_device(),
        }
    }
}

fn missing_feature(device: &str) -> Error {
    Error::Config(format!(
        "--device {device} needs a build with `--features {}`",
        if device == "cpu" { "flex" } else { device }
    ))
}

#[cfg(feature = "flex")]
fn cpu_device() -> Result<Device> {
    Ok(Device::flex().autodiff())
}

#[cfg(not(feature = "flex"))]
fn cpu_device() -> Result<Device> {
    Err(missing_feature("cpu"))
}

#[cfg(feature = "vulkan")]
fn vulkan_device() -> Result<Device> {
    Ok(Device::vulkan(Default::default()).autodiff())
}

#[cfg(not(feature = "vulkan"))]
fn vulkan_device() -> Result<Device> {
    Err(missing_feature("vulkan"))
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device> {
    Ok(Device::cuda(0).autodiff())
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device> {
    Err(missing_feature("cuda"))
}
