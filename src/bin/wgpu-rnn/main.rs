//! `wgpu-rnn`: the command-line interface. Run with no arguments for the demonstration.

mod bench;
mod contract;
mod train;

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

/// Where `bench` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchDevice {
    Gpu,
    Cpu,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceKind {
    Gpu,
    Cpu,
}

/// The files of the `forward` / `backward` contract.
#[derive(Args, Clone, Debug)]
struct ContractArgs {
    /// Model: a PyTorch nn.RNN, nn.LSTM or nn.GRU state_dict saved with
    /// safetensors.torch.save_file (or any file holding one such stack, see --prefix).
    #[arg(long)]
    model: PathBuf,
    /// The stack's name prefix in a file saved from a larger module (e.g. `encoder.rnn.`);
    /// without it, a file holding exactly one stack under some prefix loads.
    #[arg(long)]
    prefix: Option<String>,
    /// PyTorch's batch_first: `input` (and `grad_output`) are [B, T, ...] and `output` is
    /// written [B, T, D·H]; states keep [L·D, B, H]. An unbatched case ([T, I] input, states
    /// [L·D, H]) needs no flag.
    #[arg(long)]
    batch_first: bool,
    /// Case: `input` [T, B, I] and optional `h0` (and `c0` for LSTM) [L·D, B, H], plus
    /// `grad_output`, optional `grad_h_n` (and `grad_c_n`) for backward.
    #[arg(long)]
    input: PathBuf,
    /// Where to write the results.
    #[arg(long)]
    output: PathBuf,
    /// Device to run on.
    #[arg(long, value_enum, default_value = "gpu")]
    device: DeviceKind,
}

#[derive(Subcommand)]
enum Command {
    /// List the adapters, the chosen one, its backend, limits and features.
    Info,
    /// Run a PyTorch nn.RNN, nn.LSTM or nn.GRU state_dict forward on a case file (see README:
    /// file contract); writes `output`, `h_n` (and `c_n`).
    Forward(#[command(flatten)] ContractArgs),
    /// Gradients of a PyTorch nn.RNN, nn.LSTM or nn.GRU state_dict on a case file (see README:
    /// file contract): the case also holds `grad_output` [T, B, D·H] and optional `grad_h_n`
    /// (and `grad_c_n`); the output also gets `grad.input`, `grad.h0` (`grad.c0`) and
    /// `grad.<parameter>`.
    Backward(#[command(flatten)] ContractArgs),
    /// Train a character-level language model on a text file (or the built-in corpus).
    Train {
        /// Text file (UTF-8); the built-in corpus when absent.
        #[arg(long)]
        text: Option<PathBuf>,
        /// Truncated BPTT: B streams read the text in consecutive chunks and the hidden state
        /// carries from one chunk to the next (instead of random windows from zero state).
        #[arg(long)]
        tbptt: bool,
        #[command(flatten)]
        hyper: train::Hyper,
    },
    /// Generate text from a character-model checkpoint (on the CPU).
    Sample {
        /// Checkpoint written by `train`.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Characters to generate.
        #[arg(long, default_value_t = 500)]
        len: usize,
        /// Softmax temperature (lower: more conservative).
        #[arg(long, default_value_t = 0.8)]
        temperature: f32,
        /// Sampling seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Text the model reads before generating.
        #[arg(long, default_value = "\n")]
        prime: String,
        /// Device to generate on: one character at a time through a stream, its state kept
        /// on the device.
        #[arg(long, value_enum, default_value = "gpu")]
        device: DeviceKind,
    },
    /// Train one-step-ahead forecasting of a time series and compare with the naive forecast.
    Predict {
        /// CSV file; the built-in noisy sum of sines when absent.
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Column of the CSV: 0-based index or header name.
        #[arg(long, default_value = "0", requires = "csv")]
        column: String,
        /// Cell separator of the CSV: one single-byte character such as `;` or `|`, or `\t`
        /// (also `tab`) for tab-separated files.
        #[arg(long, default_value = ",", value_parser = delimiter_arg, requires = "csv")]
        delimiter: u8,
        /// After training, roll the model forward this many steps past the end of the data,
        /// feeding back its own predictions; print them and plot them (forecast.svg).
        #[arg(long, default_value_t = 0)]
        forecast: usize,
        #[command(flatten)]
        hyper: train::Hyper,
    },
    /// The benchmark suite (benches/suite.json): forward pass and training step of every case on the GPU and the CPU, as a table or JSON lines that join with PyTorch's; the cost constants; a per-kernel profile.
    Bench {
        /// Timed repetitions per case, pass and device, after one warm-up (the median is
        /// reported).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Every case at smoke-test sizes (T ≤ 8, B ≤ 4, I ≤ 16, H ≤ 32), same names.
        #[arg(long)]
        quick: bool,
        /// Time the forward pass as a variable-length batch, lengths spread evenly over 1..=T
        /// (compare with a run without it for the cost of the per-row mask).
        #[arg(long)]
        varlen: bool,
        /// Instead of the tables: the latency of streaming one step at a time (host and
        /// GPU-resident I/O) against a whole-sequence forward divided by T (`tiny_b1`,
        /// `small_b1` unless `--only` names others), on `--device`.
        #[arg(long, conflicts_with_all = ["json", "quick", "varlen", "proj_size", "gpu_suite", "constants", "profile"])]
        stream: bool,
        /// Give the LSTM cases this projection (proj_size P; compare with a run without it for
        /// the cost of the projection); the other cases are unchanged.
        #[arg(long, default_value_t = 0)]
        proj_size: usize,
        /// Only these cases of benches/suite.json (comma separated; gpu_only ones included).
        #[arg(long, value_delimiter = ',')]
        only: Option<Vec<String>>,
        /// Also the suite's gpu_only cases (sized for a real GPU).
        #[arg(long)]
        gpu_suite: bool,
        /// Where to run: gpu, cpu or both.
        #[arg(long, value_enum, default_value_t = BenchDevice::Both)]
        device: BenchDevice,
        /// One JSON object a line (name, device, pass, ms, gflops, and bytes on the GPU), in
        /// the format of PyTorch's side-by-side script, the cost constants first.
        #[arg(long)]
        json: bool,
        /// Only the cost model's constants: an empty dispatch, a submit-and-wait, a small
        /// readback, on the GPU.
        #[arg(long)]
        constants: bool,
        /// Instead of the tables: the time of each kernel of the charlm training step on the
        /// GPU, every dispatch timed in isolation (`--repeats` times each).
        #[arg(long)]
        profile: bool,
    },
}

/// `--delimiter`, checked by [`wgpu_rnn::train::series::parse_delimiter`].
fn delimiter_arg(s: &str) -> std::result::Result<u8, String> {
    wgpu_rnn::train::series::parse_delimiter(s).map_err(|e| match e {
        wgpu_rnn::Error::Config(message) => message,
        other => other.to_string(),
    })
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

fn contract_run(c: &ContractArgs, adapter: &AdapterArgs, with_grad: bool) -> Result<()> {
    let device = open_device(c.device, adapter)?;
    contract::run(
        &c.model,
        c.prefix.as_deref(),
        c.batch_first,
        &c.input,
        &c.output,
        &device,
        with_grad,
    )
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Info) => info(&cli.adapter),
        Some(Command::Forward(c)) => contract_run(&c, &cli.adapter, false),
        Some(Command::Backward(c)) => contract_run(&c, &cli.adapter, true),
        Some(Command::Train { text, tbptt, hyper }) => {
            let device = open_device(hyper.device, &cli.adapter)?;
            train::charlm(&hyper, text.as_deref(), tbptt, &device)
        }
        Some(Command::Sample {
            checkpoint,
            len,
            temperature,
            seed,
            prime,
            device,
        }) => {
            let prime = prime.replace("\\n", "\n");
            let device = open_device(device, &cli.adapter)?;
            println!(
                "{}",
                train::sample(&checkpoint, len, temperature, seed, &prime, &device)?
            );
            Ok(())
        }
        Some(Command::Predict {
            csv,
            column,
            delimiter,
            forecast,
            hyper,
        }) => {
            let device = open_device(hyper.device, &cli.adapter)?;
            train::predict(
                &hyper,
                csv.as_deref(),
                &column,
                delimiter,
                forecast,
                &device,
            )
        }
        Some(Command::Bench {
            repeats,
            quick,
            varlen,
            stream,
            proj_size,
            only,
            gpu_suite,
            device,
            json,
            constants,
            profile,
        }) => {
            let gpu = device != BenchDevice::Cpu || profile || constants;
            let ctx = match gpu {
                true => Some(GpuContext::new(&cli.adapter.options())?),
                false => None,
            };
            if stream {
                let ctx = ctx.as_ref().filter(|_| device != BenchDevice::Cpu);
                let cpu = device != BenchDevice::Gpu;
                return bench::stream(ctx, cpu, repeats.max(1), only.as_deref());
            }
            match (profile, constants, &ctx) {
                (true, _, Some(ctx)) => bench::profile(ctx, repeats.max(1)),
                (false, true, Some(ctx)) => bench::constants(ctx, repeats.max(5), json),
                _ => bench::run(
                    ctx.as_ref(),
                    &bench::Options {
                        repeats,
                        quick,
                        only,
                        gpu_suite,
                        gpu,
                        cpu: device != BenchDevice::Gpu,
                        json,
                        varlen,
                        proj_size,
                    },
                ),
            }
        }
        None => {
            let device = open_device(DeviceKind::Gpu, &cli.adapter)?;
            train::demo(&device, 45.0)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The crate's messages already end with their cause (`Error::Io` is
            // "{path}: {source}"), so a cause is printed only when it adds something:
            // printing every source repeated the operating system's message.
            let message = e.to_string();
            eprintln!("error: {message}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                let cause = s.to_string();
                if !message.contains(&cause) {
                    eprintln!("  caused by: {cause}");
                }
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}
