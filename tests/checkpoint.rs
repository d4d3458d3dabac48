//! Checkpoints: a run stopped, saved, loaded and resumed continues the uninterrupted run's
//! trajectory exactly (bit-identical on the CPU; on the GPU, on the same adapter).

mod common;

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use wgpu_rnn::train::checkpoint::Checkpoint;
use wgpu_rnn::train::data::{self, CharCorpus};
use wgpu_rnn::train::{Batch, Optimizer, SeqModel, Task, TrainConfig, TrainState, Trainer};
use wgpu_rnn::{Cell, Device, RnnConfig};

fn run(
    device: &Device,
    state: TrainState,
    cfg: TrainConfig,
    mut rng: ChaCha8Rng,
    steps: u64,
    ids: &[u32],
) -> (TrainState, ChaCha8Rng) {
    let mut tr = Trainer::new(state, cfg, device).unwrap();
    while tr.steps() < steps {
        let b = data::random_batch(ids, 12, 4, &mut rng);
        tr.step(&b, false).unwrap();
    }
    (tr.state().unwrap(), rng)
}

#[test]
fn resume_reproduces_the_uninterrupted_run() {
    let corpus = CharCorpus::new(data::BUILTIN_TEXT, 0.1, 20).unwrap();
    let v = corpus.vocab.len();
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (opt, clip, cell, proj_size) in [
        (Optimizer::adam(3e-3), Some(1.0), Cell::RnnTanh, 0),
        (Optimizer::sgd(0.05, 0.9), None, Cell::RnnTanh, 0),
        (Optimizer::adagrad(0.05), Some(5.0), Cell::RnnTanh, 0),
        (Optimizer::adam(3e-3), Some(1.0), Cell::Lstm, 0),
        (Optimizer::sgd(0.05, 0.9), Some(1.0), Cell::Gru, 0),
        (Optimizer::adam(3e-3), Some(1.0), Cell::Lstm, 10),
    ] {
        for device in [Device::Cpu, Device::Gpu(common::gpu())] {
            let model = SeqModel::new(
                RnnConfig::new(cell, v, 24).proj_size(proj_size).layers(2),
                Task::Tokens { vocab: v },
                5,
            )
            .unwrap();
            let cfg = TrainConfig {
                optimizer: opt,
                clip_norm: clip,
            };
            let rng = ChaCha8Rng::seed_from_u64(11);
            let (full, _) = run(
                &device,
                TrainState::new(model.clone()),
                cfg,
                rng.clone(),
                8,
                &corpus.train,
            );
            let (half, rng_half) = run(&device, TrainState::new(model), cfg, rng, 3, &corpus.train);
            let path = dir.join(format!(
                "{}-{cell}-{proj_size}-{}.safetensors",
                opt.name(),
                matches!(device, Device::Cpu)
            ));
            let mut meta = BTreeMap::new();
            meta.insert("vocab".to_string(), corpus.vocab.as_string());
            Checkpoint {
                state: half,
                train: cfg,
                rng: rng_half,
                meta,
            }
            .save(&path)
            .unwrap();
            let c = Checkpoint::load(&path).unwrap();
            assert_eq!(c.train, cfg);
            assert_eq!(c.meta["vocab"], corpus.vocab.as_string());
            assert_eq!(c.state.step, 3);
            assert_eq!(
                (
                    c.state.model.config().cell,
                    c.state.model.config().proj_size
                ),
                (cell, proj_size),
                "the checkpoint records the cell and the projection"
            );
            let (resumed, _) = run(&device, c.state, c.train, c.rng, 8, &corpus.train);
            assert_eq!(resumed.step, 8);
            assert!(
                resumed == full,
                "{} {cell} on {}: resumed run differs from the uninterrupted one",
                opt.name(),
                device.describe()
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_checkpoint_with_bad_metadata_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-ckpt-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = SeqModel::new(
        RnnConfig::new(Cell::RnnRelu, 2, 3),
        Task::Regression { outputs: 1 },
        0,
    )
    .unwrap();
    let cfg = TrainConfig {
        optimizer: Optimizer::adam(1e-3),
        clip_norm: None,
    };
    let path = dir.join("c.safetensors");
    Checkpoint {
        state: TrainState::new(model),
        train: cfg,
        rng: ChaCha8Rng::seed_from_u64(0),
        meta: BTreeMap::new(),
    }
    .save(&path)
    .unwrap();
    let mut file = wgpu_rnn::TensorFile::read(&path).unwrap();
    file.metadata.remove("rng.seed");
    file.write(&path).unwrap();
    let err = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(err.contains("rng.seed"), "{err}");
    let mut file = wgpu_rnn::TensorFile::read(&path).unwrap();
    file.tensors.remove("optim.m2");
    file.metadata.insert("rng.seed".into(), "00".repeat(32));
    file.write(&path).unwrap();
    let err = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(err.contains("optim.m2"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_mean_square_checkpoint_round_trips_without_a_head() {
    // The headless benchmark task: no head tensors in the file (the `rnn.` tensors load into
    // a bare nn.RNN), the task and the empty head restored, and a resumed run continues the
    // uninterrupted one exactly.
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-ckpt-ms-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = RnnConfig::new(Cell::RnnRelu, 3, 10)
        .layers(2)
        .bidirectional(true);
    let cfg = TrainConfig {
        optimizer: Optimizer::adam(1e-2),
        clip_norm: Some(0.5),
    };
    let batches: Vec<Batch> = (0..6)
        .map(|i| Batch::input_only(common::random(&[7, 3, 3], 1.0, 40 + i)))
        .collect();
    let run = |device: &Device, state: TrainState, from: usize, to: usize| {
        let mut tr = Trainer::new(state, cfg, device).unwrap();
        for b in &batches[from..to] {
            tr.step(b, false).unwrap();
        }
        tr.state().unwrap()
    };
    for device in [Device::Cpu, Device::Gpu(common::gpu())] {
        let model = SeqModel::new(config, Task::MeanSquare, 3).unwrap();
        let full = run(&device, TrainState::new(model.clone()), 0, 6);
        let half = run(&device, TrainState::new(model), 0, 2);
        let path = dir.join(format!("ms-{}.safetensors", matches!(device, Device::Cpu)));
        Checkpoint {
            state: half.clone(),
            train: cfg,
            rng: ChaCha8Rng::seed_from_u64(1),
            meta: BTreeMap::new(),
        }
        .save(&path)
        .unwrap();
        let file = wgpu_rnn::TensorFile::read(&path).unwrap();
        assert!(!file.tensors.keys().any(|k| k.starts_with("head.")));
        assert_eq!(file.metadata["task"], "mean_square");
        let c = Checkpoint::load(&path).unwrap();
        assert_eq!(c.state, half, "{}", device.describe());
        assert_eq!(c.state.model.task, Task::MeanSquare);
        assert_eq!(c.state.model.head_w.shape(), &[0, 20]);
        let resumed = run(&device, c.state, 2, 6);
        assert!(
            resumed == full,
            "{}: resumed run differs",
            device.describe()
        );
        // A mean_square checkpoint that claims outputs is refused.
        let mut file = wgpu_rnn::TensorFile::read(&path).unwrap();
        file.metadata.insert("outputs".into(), "2".into());
        file.write(&path).unwrap();
        let err = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(err.contains("no head") && err.contains("outputs"), "{err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
