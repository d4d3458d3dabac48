//! `wgpu-rnn`: the command-line interface. Run with no arguments for the demonstration.

mod bench;
mod contract;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use wgpu_rnn::gpu::{AdapterOptions, GpuContext, list_adapters};
use wgpu_rnn::{Device, Result};

/// Recurrent neural networks on any GPU through wgpu, with a CPU reference path.
#[derive(Parser)]
#[command(name = "wgpu-rnn", version, about)]
struct Cli {
    #[command(flatten)]
    adapter: AdapterArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Adapter choice; each flag overrides the wgpu environment variable of the same meaning.
#[derive(Args, Clone, Debug)]
struct AdapterArgs {
    /// Backends to search: vulkan, metal, dx12, gl (comma separated) [env: WGPU_BACKEND]
    #[arg(long, global = true)]
    backend: Option<String>,
    /// Use the first adapter whose name contains this [env: WGPU_ADAPTER_NAME]
    #[arg(long, global = true)]
    adapter: Option<String>,
    /// Power preference: low, high or none [env: WGPU_POWER_PREF]
    #[arg(long, global = true)]
    power: Option<String>,
}

impl AdapterArgs {
    fn options(&self) -> AdapterOptions {
        AdapterOptions {
            backends: self.backend.clone(),
            adapter_name: self.adapter.clone(),
            power_preference: self.power.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DeviceKind {
    Gpu,
    Cpu,
}

#[derive(Subcommand)]
enum Command {
    /// List the adapters, the chosen one, its backend, limits and features.
    Info,
    /// Run a PyTorch nn.RNN state_dict forward on a case file (see README: file contract).
    Forward {
        /// Model: a PyTorch state_dict saved with safetensors.torch.save_file.
        #[arg(long)]
        model: PathBuf,
        /// Case: `input` [T, B, I] and optional `h0` [L·D, B, H].
        #[arg(long)]
        input: PathBuf,
        /// Where to write `output` and `h_n`.
        #[arg(long)]
        output: PathBuf,
        /// Device to run on.
        #[arg(long, value_enum, default_value = "gpu")]
        device: DeviceKind,
    },
    /// Gradients of a PyTorch nn.RNN state_dict on a case file (see README: file contract).
    Backward {
        /// Model: a PyTorch state_dict saved with safetensors.torch.save_file.
        #[arg(long)]
        model: PathBuf,
        /// Case: `input`, optional `h0`, `grad_output` [T, B, D·H], optional `grad_h_n`.
        #[arg(long)]
        input: PathBuf,
        /// Where to write `output`, `h_n`, `grad.input`, `grad.h0` and `grad.<parameter>`.
        #[arg(long)]
        output: PathBuf,
        /// Device to run on.
        #[arg(long, value_enum, default_value = "gpu")]
        device: DeviceKind,
    },
    /// Time forward passes on the GPU and the CPU side by side on the benchmark shapes.
    Bench {
        /// Timed repetitions per shape and device (the median is reported).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Only the small shapes (fast on software adapters).
        #[arg(long)]
        quick: bool,
    },
}

fn open_device(kind: DeviceKind, adapter: &AdapterArgs) -> Result<Device> {
    Ok(match kind {
        DeviceKind::Cpu => Device::Cpu,
        DeviceKind::Gpu => Device::Gpu(GpuContext::new(&adapter.options())?),
    })
}

fn info(adapter: &AdapterArgs) -> Result<()> {
    let opts = adapter.options();
    let all = list_adapters(&opts);
    println!("adapters for backends {:?}:", opts.resolved_backends());
    if all.is_empty() {
        println!("  (none)");
    }
    for a in &all {
        println!(
            "  {} | {:?} | {:?} | driver {} {}",
            a.name, a.backend, a.device_type, a.driver, a.driver_info
        );
    }
    let ctx: Arc<GpuContext> = GpuContext::new(&opts)?;
    println!("chosen: {}", ctx.describe());
    let granted = ctx.limits();
    let max = ctx.adapter_limits();
    println!("limits (granted / adapter maximum):");
    let rows: [(&str, u64, u64); 8] = [
        (
            "max_storage_buffer_binding_size",
            granted.max_storage_buffer_binding_size,
            max.max_storage_buffer_binding_size,
        ),
        (
            "max_buffer_size",
            granted.max_buffer_size,
            max.max_buffer_size,
        ),
        (
            "max_storage_buffers_per_shader_stage",
            granted.max_storage_buffers_per_shader_stage as u64,
            max.max_storage_buffers_per_shader_stage as u64,
        ),
        (
            "max_compute_workgroup_storage_size",
            granted.max_compute_workgroup_storage_size as u64,
            max.max_compute_workgroup_storage_size as u64,
        ),
        (
            "max_compute_invocations_per_workgroup",
            granted.max_compute_invocations_per_workgroup as u64,
            max.max_compute_invocations_per_workgroup as u64,
        ),
        (
            "max_compute_workgroups_per_dimension",
            granted.max_compute_workgroups_per_dimension as u64,
            max.max_compute_workgroups_per_dimension as u64,
        ),
        (
            "max_uniform_buffer_binding_size",
            granted.max_uniform_buffer_binding_size,
            max.max_uniform_buffer_binding_size,
        ),
        (
            "min_uniform_buffer_offset_alignment",
            granted.min_uniform_buffer_offset_alignment as u64,
            max.min_uniform_buffer_offset_alignment as u64,
        ),
    ];
    for (name, g, m) in rows {
        println!("  {name:<40} {g:>14} / {m}");
    }
    println!("features: {:?}", ctx.adapter_features());
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Info) => info(&cli.adapter),
        Some(Command::Forward {
            model,
            input,
            output,
            device,
        }) => {
            let device = open_device(device, &cli.adapter)?;
            contract::run(&model, &input, &output, &device, false)
        }
        Some(Command::Backward {
            model,
            input,
            output,
            device,
        }) => {
            let device = open_device(device, &cli.adapter)?;
            contract::run(&model, &input, &output, &device, true)
        }
        Some(Command::Bench { repeats, quick }) => {
            let device = open_device(DeviceKind::Gpu, &cli.adapter)?;
            let Device::Gpu(ctx) = device else {
                unreachable!("open_device(Gpu) returns a GPU device")
            };
            bench::run(&ctx, &bench::shapes(quick), repeats.max(1))
        }
        None => {
            let device = open_device(DeviceKind::Gpu, &cli.adapter)?;
            let Device::Gpu(ctx) = device else {
                unreachable!("open_device(Gpu) returns a GPU device")
            };
            bench::demo(&ctx)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}
