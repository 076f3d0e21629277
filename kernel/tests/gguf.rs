//! GGUF reader and writer: round trips, the malformed corpus, and mutation robustness.

use std::fs;
use std::path::PathBuf;

use hearth_kernel::GgmlType;
use hearth_kernel::gguf::{ArrayBuf, Gguf, GgufWriter, MetadataEntry, TensorSpec, Value, ValueType};

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/gguf")
}

/// Bytes of a small file with every metadata type, nested arrays and several tensor types.
fn sample_file() -> Vec<u8> {
    let tokens = ArrayBuf::of(["<s>", "héllo", "", "wörld"]);
    let inner_a = ArrayBuf::of([1u8, 2, 3]);
    let inner_b = ArrayBuf::of::<u8>([]);
    let nested = ArrayBuf::of([inner_a.as_array(), inner_b.as_array()]);
    let flags = ArrayBuf::of([true, false, true]);
    let scores = ArrayBuf::of([0.5f32, -1.25, f32::MAX]);
    let metadata = [
        MetadataEntry {
            key: "general.architecture",
            value: Value::String("llama"),
        },
        MetadataEntry {
            key: "general.alignment",
            value: Value::U32(64),
        },
        MetadataEntry {
            key: "t.u8",
            value: Value::U8(200),
        },
        MetadataEntry {
            key: "t.i8",
            value: Value::I8(-100),
        },
        MetadataEntry {
            key: "t.u16",
            value: Value::U16(60000),
        },
        MetadataEntry {
            key: "t.i16",
            value: Value::I16(-30000),
        },
        MetadataEntry {
            key: "t.u32",
            value: Value::U32(4_000_000_000),
        },
        MetadataEntry {
            key: "t.i32",
            value: Value::I32(-2_000_000_000),
        },
        MetadataEntry {
            key: "t.f32",
            value: Value::F32(1e-5),
        },
        MetadataEntry {
            key: "t.bool",
            value: Value::Bool(true),
        },
        MetadataEntry {
            key: "t.u64",
            value: Value::U64(u64::MAX),
        },
        MetadataEntry {
            key: "t.i64",
            value: Value::I64(i64::MIN),
        },
        MetadataEntry {
            key: "t.f64",
            value: Value::F64(std::f64::consts::PI),
        },
        MetadataEntry {
            key: "t.tokens",
            value: Value::Array(tokens.as_array()),
        },
        MetadataEntry {
            key: "t.nested",
            value: Value::Array(nested.as_array()),
        },
        MetadataEntry {
            key: "t.flags",
            value: Value::Array(flags.as_array()),
        },
        MetadataEntry {
            key: "t.scores",
            value: Value::Array(scores.as_array()),
        },
    ];
    let specs = [
        TensorSpec {
            name: "f32_vec".into(),
            dtype: GgmlType::F32,
            ne: vec![5],
        },
        TensorSpec {
            name: "q8_mat".into(),
            dtype: GgmlType::Q8_0,
            ne: vec![64, 3],
        },
        TensorSpec {
            name: "q4k_3d".into(),
            dtype: GgmlType::Q4_K,
            ne: vec![256, 2, 2],
        },
    ];
    let mut writer = GgufWriter::new(Vec::new(), &metadata, &specs).unwrap();
    for (i, spec) in specs.iter().enumerate() {
        let n: usize = spec.ne.iter().product::<usize>() / spec.dtype.block_len() * spec.dtype.block_bytes();
        writer.write_tensor(&vec![i as u8 + 1; n]).unwrap();
    }
    writer.finish().unwrap()
}

#[test]
fn writer_output_parses_back_to_the_same_content() {
    let bytes = sample_file();
    let file = Gguf::parse(&bytes).unwrap();
    assert_eq!(file.version(), 3);
    assert_eq!(file.alignment(), 64);
    assert_eq!(file.data_offset() % 64, 0);
    assert_eq!(file.metadata().len(), 17);
    assert_eq!(file.get("t.u8"), Some(Value::U8(200)));
    assert_eq!(file.get("t.i8"), Some(Value::I8(-100)));
    assert_eq!(file.get("t.u16"), Some(Value::U16(60000)));
    assert_eq!(file.get("t.i16"), Some(Value::I16(-30000)));
    assert_eq!(file.get("t.u32").and_then(|v| v.as_u64()), Some(4_000_000_000));
    assert_eq!(file.get("t.i32").and_then(|v| v.as_i64()), Some(-2_000_000_000));
    assert_eq!(file.get("t.f32"), Some(Value::F32(1e-5)));
    assert_eq!(file.get("t.bool").and_then(|v| v.as_bool()), Some(true));
    assert_eq!(file.get("t.u64").and_then(|v| v.as_u64()), Some(u64::MAX));
    assert_eq!(file.get("t.i64").and_then(|v| v.as_i64()), Some(i64::MIN));
    assert_eq!(file.get("t.f64").and_then(|v| v.as_f64()), Some(std::f64::consts::PI));

    let tokens = file.get("t.tokens").and_then(|v| v.as_array()).unwrap();
    assert_eq!(tokens.elem_type(), ValueType::String);
    assert_eq!(
        tokens.strs().unwrap().collect::<Vec<_>>(),
        ["<s>", "héllo", "", "wörld"]
    );
    let nested = file.get("t.nested").and_then(|v| v.as_array()).unwrap();
    let inner: Vec<Vec<u64>> = nested
        .iter()
        .map(|v| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect())
        .collect();
    assert_eq!(inner, [vec![1, 2, 3], vec![]]);
    let flags: Vec<bool> = file
        .get("t.flags")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_bool().unwrap())
        .collect();
    assert_eq!(flags, [true, false, true]);
    let scores: Vec<f64> = file
        .get("t.scores")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(scores, [0.5, -1.25, f64::from(f32::MAX)]);

    let names: Vec<&str> = file.tensors().iter().map(|t| t.name).collect();
    assert_eq!(names, ["f32_vec", "q8_mat", "q4k_3d"]);
    let q4k = file.tensor("q4k_3d").unwrap();
    assert_eq!(
        (q4k.dtype, q4k.shape(), q4k.n_rows(), q4k.row_bytes()),
        (GgmlType::Q4_K, &[256, 2, 2][..], 4, 144)
    );
    assert_eq!(q4k.data.len(), 4 * 144);
    assert!(q4k.data.iter().all(|&b| b == 3));
    for t in file.tensors() {
        assert_eq!(t.offset % 64, 0, "{t:?}");
        // The view points into the input: nothing was copied.
        let start = t.data.as_ptr() as usize - bytes.as_ptr() as usize;
        assert_eq!(start as u64, file.data_offset() as u64 + t.offset);
    }
    assert!(file.tensor("missing").is_none());
}

#[test]
fn copying_metadata_and_tensors_reproduces_the_file_byte_for_byte() {
    let bytes = sample_file();
    let file = Gguf::parse(&bytes).unwrap();
    let specs: Vec<TensorSpec> = file
        .tensors()
        .iter()
        .map(|t| TensorSpec {
            name: t.name.into(),
            dtype: t.dtype,
            ne: t.shape().to_vec(),
        })
        .collect();
    let mut writer = GgufWriter::new(Vec::new(), file.metadata(), &specs).unwrap();
    for t in file.tensors() {
        writer.write_tensor(t.data).unwrap();
    }
    assert_eq!(writer.finish().unwrap(), bytes);
}

#[test]
fn writer_rejects_what_readers_would_reject() {
    let meta = [MetadataEntry {
        key: "general.alignment",
        value: Value::U32(48),
    }];
    assert!(
        GgufWriter::new(Vec::new(), &meta, &[])
            .unwrap_err()
            .to_string()
            .contains("power-of-two")
    );
    let ragged = [TensorSpec {
        name: "x".into(),
        dtype: GgmlType::Q4_K,
        ne: vec![100],
    }];
    assert!(
        GgufWriter::new(Vec::new(), &[], &ragged)
            .unwrap_err()
            .to_string()
            .contains("multiple of the Q4_K block")
    );
    let dup = [
        TensorSpec {
            name: "x".into(),
            dtype: GgmlType::F32,
            ne: vec![1],
        },
        TensorSpec {
            name: "x".into(),
            dtype: GgmlType::F32,
            ne: vec![1],
        },
    ];
    assert!(
        GgufWriter::new(Vec::new(), &[], &dup)
            .unwrap_err()
            .to_string()
            .contains("appears twice")
    );
    let one = [TensorSpec {
        name: "x".into(),
        dtype: GgmlType::F32,
        ne: vec![2],
    }];
    let mut w = GgufWriter::new(Vec::new(), &[], &one).unwrap();
    assert!(
        w.write_tensor(&[0; 4])
            .unwrap_err()
            .to_string()
            .contains("needs 8 bytes")
    );
    let w = GgufWriter::new(Vec::new(), &[], &one).unwrap();
    assert!(w.finish().unwrap_err().to_string().contains("only 0 of 1"));
}

#[test]
fn every_malformed_corpus_file_gets_its_own_clear_error() {
    let dir = testdata().join("malformed");
    let manifest = fs::read_to_string(dir.join("expected.tsv")).unwrap();
    let mut listed = Vec::new();
    for line in manifest.lines().filter(|l| !l.starts_with('#')) {
        let (file, phrase) = line.split_once('\t').unwrap();
        let bytes = fs::read(dir.join(file)).unwrap();
        let error = Gguf::parse(&bytes).expect_err(file).to_string();
        assert!(
            error.contains(phrase),
            "{file}: expected an error containing {phrase:?}, got {error:?}"
        );
        listed.push(file.to_owned());
    }
    let mut present: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".gguf"))
        .collect();
    present.sort();
    listed.sort();
    assert_eq!(present, listed, "every corpus file must be listed in expected.tsv");
    assert!(listed.len() >= 25);
}

#[test]
fn the_corpus_base_file_is_valid() {
    let bytes = fs::read(testdata().join("valid_small.gguf")).unwrap();
    let file = Gguf::parse(&bytes).unwrap();
    assert_eq!(file.tensors().len(), 2);
    assert_eq!(file.tensor("b").unwrap().data.len(), 68);
}

/// xorshift64*: a deterministic source of mutations without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A poor man's fuzzer that runs in every test pass: random byte edits, 8-byte overwrites with extreme values (to hit
/// counts and lengths) and truncations of a valid file must give Ok or Err, never a panic or a hang. The real
/// coverage-guided fuzzer lives in kernel/fuzz.
#[test]
fn mutated_files_never_panic() {
    let base = sample_file();
    let extremes = [
        0u64,
        1,
        0xff,
        1 << 31,
        u32::MAX as u64,
        1 << 62,
        u64::MAX,
        u64::MAX - 31,
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let mut bytes = base.clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(3) {
                0 => {
                    let at = rng.below(bytes.len());
                    bytes[at] = rng.next() as u8;
                }
                1 => {
                    let at = rng.below(bytes.len() - 8);
                    let v = extremes[rng.below(extremes.len())];
                    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
                }
                _ => bytes.truncate(rng.below(bytes.len())),
            }
            if bytes.len() < 16 {
                break;
            }
        }
        if let Ok(file) = Gguf::parse(&bytes) {
            accepted += 1;
            // Whatever parses must be internally consistent.
            for t in file.tensors() {
                assert_eq!(t.data.len(), t.n_rows() * t.row_bytes());
            }
            for a in file.metadata().iter().filter_map(|e| e.value.as_array()) {
                assert_eq!(a.iter().count(), a.len());
            }
        }
    }
    // Mutations inside tensor data leave the file valid, so some must be accepted; if none were, the mutator is broken.
    assert!(accepted > 100, "only {accepted} mutants parsed");
}
