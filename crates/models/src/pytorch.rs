//! PyTorch checkpoints (`pytorch_model.bin`, single or sharded) as a [`TensorSource`].
//!
//! Tensors are read by [`pytorch_reader`] (burn's standalone reader), which parses the pickle
//! without executing it. That reader keeps any call it does not understand as an opaque
//! value and carries on, so a pickle that would run `os.system` under Python still "loads"
//! there. radit refuses such a file outright: before the reader sees it, [`scan_checkpoint`]
//! walks every pickle opcode and rejects any import that is not one of PyTorch's
//! tensor-rebuild functions, a storage class, a dtype or `collections.OrderedDict`, naming the
//! file and the offending callable. Nothing in a checkpoint is ever executed.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use pytorch_reader::{DType, PytorchReader};

use crate::error::{ModelError, Result};
use crate::weights::{read_weight_map, HostTensor, TensorSource};

/// The single-file PyTorch checkpoint name in a model directory.
pub const PYTORCH_FILE: &str = "pytorch_model.bin";
/// The index of a sharded PyTorch checkpoint in a model directory.
pub const PYTORCH_INDEX: &str = "pytorch_model.bin.index.json";

/// Every import a plain PyTorch state dict needs; anything else is refused.
fn allowed_import(module: &str, name: &str) -> bool {
    match module {
        "collections" => name == "OrderedDict",
        "torch._utils" => matches!(
            name,
            "_rebuild_tensor"
                | "_rebuild_tensor_v2"
                | "_rebuild_tensor_v3"
                | "_rebuild_parameter"
                | "_rebuild_parameter_with_state"
        ),
        "torch" => matches!(
            name,
            // Typed storages (what torch.save writes for each tensor's storage).
            "FloatStorage"
                | "DoubleStorage"
                | "HalfStorage"
                | "BFloat16Storage"
                | "LongStorage"
                | "IntStorage"
                | "ShortStorage"
                | "CharStorage"
                | "ByteStorage"
                | "BoolStorage"
                // dtypes (the v3 rebuild names the element type separately).
                | "float32"
                | "float"
                | "float64"
                | "double"
                | "float16"
                | "half"
                | "bfloat16"
                | "int64"
                | "long"
                | "int32"
                | "int"
                | "int16"
                | "short"
                | "int8"
                | "uint8"
                | "uint16"
                | "uint32"
                | "uint64"
                | "bool"
        ),
        _ => false,
    }
}

/// Longest module or attribute name the scan keeps; longer ones are never allowed anyway.
const MAX_NAME: usize = 256;
/// Bytes of memoized strings the scan remembers (to resolve `STACK_GLOBAL` operands fetched
/// from the memo); past it, strings are forgotten and such an import is refused.
const MAX_MEMO_BYTES: usize = 16 << 20;

/// Why a scan stopped.
enum ScanError {
    /// The pickle imports something outside [`allowed_import`].
    Refused(String),
    /// The pickle is malformed or truncated.
    Invalid(String),
    /// The file could not be read.
    Io(std::io::Error),
}

impl From<std::io::Error> for ScanError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ScanError::Invalid("the pickle ends before its STOP opcode (truncated file?)".into())
        } else {
            ScanError::Io(e)
        }
    }
}

impl ScanError {
    fn into_model_error(self, path: &Path) -> ModelError {
        match self {
            ScanError::Refused(callable) => ModelError::UnsafePickle {
                path: path.to_path_buf(),
                callable,
            },
            ScanError::Invalid(message) => ModelError::Pytorch {
                path: path.to_path_buf(),
                message,
            },
            ScanError::Io(e) => ModelError::io(path, e),
        }
    }
}

/// A callable's name as shown in an error: escaped, and cut short if a corrupt file made it
/// long.
fn display_name(module: &[u8], name: &[u8]) -> String {
    let text = format!(
        "{}.{}",
        String::from_utf8_lossy(module),
        String::from_utf8_lossy(name)
    );
    let escaped: String = text.escape_debug().collect();
    if escaped.chars().count() > 120 {
        format!("{}...", escaped.chars().take(120).collect::<String>())
    } else {
        escaped
    }
}

/// Walks one pickle's opcodes up to its `STOP` without building any object, refusing every
/// import outside [`allowed_import`]. `remaining` bounds every length the pickle declares.
///
/// `STACK_GLOBAL` takes its module and name from the stack; the scan accepts it only when the
/// two stack-changing opcodes just before it pushed string constants (directly or from a memo
/// slot last filled with one), which is how every pickler writes it, and refuses it otherwise.
struct Scanner<'r, R> {
    r: &'r mut R,
    remaining: u64,
    /// The top stack items, as far as they are known: `Some(text)` for a string constant,
    /// `None` for any other value. Emptied by every opcode that pops.
    recent: Vec<Option<Vec<u8>>>,
    /// Memo slots known to hold a string constant.
    memo: HashMap<u64, Vec<u8>>,
    memo_bytes: usize,
    /// `MEMOIZE`s so far: the slot the next one fills, as long as no `PUT` is mixed in.
    memoized: u64,
    used_put: bool,
    /// False once `PUT` and `MEMOIZE` are mixed (the next `MEMOIZE` slot is then not known
    /// without tracking every slot): from then on no memo slot counts as a string.
    memo_reliable: bool,
}

impl<'r, R: BufRead> Scanner<'r, R> {
    fn new(r: &'r mut R, remaining: u64) -> Self {
        Self {
            r,
            remaining,
            recent: Vec::new(),
            memo: HashMap::new(),
            memo_bytes: 0,
            memoized: 0,
            used_put: false,
            memo_reliable: true,
        }
    }

    fn take(&mut self, n: u64) -> std::result::Result<(), ScanError> {
        if n > self.remaining {
            return Err(ScanError::Invalid(format!(
                "the pickle needs {n} more bytes but only {} remain (truncated file?)",
                self.remaining
            )));
        }
        self.remaining -= n;
        Ok(())
    }

    fn u8(&mut self) -> std::result::Result<u8, ScanError> {
        let mut b = [0u8; 1];
        self.take(1)?;
        self.r.read_exact(&mut b)?;
        Ok(b[0])
    }

    fn uint(&mut self, width: usize) -> std::result::Result<u64, ScanError> {
        let mut b = [0u8; 8];
        self.take(width as u64)?;
        self.r.read_exact(&mut b[..width])?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads `n` bytes, keeping them only if short enough to be a name.
    fn bytes(&mut self, n: u64) -> std::result::Result<Option<Vec<u8>>, ScanError> {
        self.take(n)?;
        if n as usize <= MAX_NAME {
            let mut buf = vec![0u8; n as usize];
            self.r.read_exact(&mut buf)?;
            Ok(Some(buf))
        } else {
            let copied = std::io::copy(&mut (&mut *self.r).take(n), &mut std::io::sink())?;
            if copied != n {
                return Err(ScanError::Invalid(
                    "the pickle ends inside a string or bytes value (truncated file?)".into(),
                ));
            }
            Ok(None)
        }
    }

    /// A newline-terminated argument (text opcodes); the newline is dropped. Over-long lines
    /// are read to their end but cut to [`MAX_NAME`] + 1 bytes.
    fn line(&mut self) -> std::result::Result<Vec<u8>, ScanError> {
        let mut out = Vec::new();
        loop {
            let buf = self.r.fill_buf()?;
            if buf.is_empty() {
                return Err(ScanError::Invalid(
                    "the pickle ends inside a text argument (truncated file?)".into(),
                ));
            }
            let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            let room = (MAX_NAME + 1).saturating_sub(out.len());
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            let used = done.unwrap_or(buf.len());
            self.take(used as u64)?;
            self.r.consume(used);
            if done.is_some() {
                return Ok(out);
            }
        }
    }

    fn push(&mut self, value: Option<Vec<u8>>) {
        self.recent.push(value);
        if self.recent.len() > 2 {
            self.recent.remove(0);
        }
    }

    fn memo_put(&mut self, idx: u64) {
        if !self.memo_reliable {
            self.memo.clear();
            return;
        }
        match self.recent.last() {
            Some(Some(text)) if self.memo_bytes + text.len() <= MAX_MEMO_BYTES => {
                self.memo_bytes += text.len();
                self.memo.insert(idx, text.clone());
            }
            _ => {
                self.memo.remove(&idx);
            }
        }
    }

    fn memo_get(&mut self, idx: u64) {
        let value = self.memo.get(&idx).filter(|_| self.memo_reliable).cloned();
        self.push(value);
    }

    fn import(&mut self, module: &[u8], name: &[u8]) -> std::result::Result<(), ScanError> {
        let ok = std::str::from_utf8(module)
            .ok()
            .zip(std::str::from_utf8(name).ok())
            .is_some_and(|(m, n)| allowed_import(m, n));
        if ok {
            Ok(())
        } else {
            Err(ScanError::Refused(display_name(module, name)))
        }
    }

    /// Scans up to and including `STOP`.
    fn run(&mut self) -> std::result::Result<(), ScanError> {
        loop {
            let op = self.u8()?;
            match op {
                b'.' => return Ok(()),
                // Opcodes that leave the stack as it is.
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.uint(8)?; // FRAME
                }
                0x94 => {
                    // MEMOIZE fills slot len(memo).
                    if self.used_put {
                        self.memo_reliable = false;
                    }
                    let idx = self.memoized;
                    self.memoized += 1;
                    self.memo_put(idx);
                }
                b'p' | b'q' | b'r' => {
                    let idx = match op {
                        b'p' => parse_index(&self.line()?)?,
                        b'q' => self.uint(1)?,
                        _ => self.uint(4)?,
                    };
                    self.used_put = true;
                    if self.memoized > 0 {
                        self.memo_reliable = false;
                    }
                    self.memo_put(idx);
                }
                // Pushes of a memo slot.
                b'g' => {
                    let idx = parse_index(&self.line()?)?;
                    self.memo_get(idx);
                }
                b'h' => {
                    let idx = self.uint(1)?;
                    self.memo_get(idx);
                }
                b'j' => {
                    let idx = self.uint(4)?;
                    self.memo_get(idx);
                }
                // Pushes of string constants.
                b'V' => {
                    // Protocol 0 UNICODE is raw-unicode-escape: only escape-free text is kept.
                    let text = self.line()?;
                    self.push(Some(text).filter(|t| t.len() <= MAX_NAME && !t.contains(&b'\\')));
                }
                b'S' => {
                    // Protocol 0 STRING: a quoted repr; a module name never needs escapes.
                    let text = self.line()?;
                    let unquoted = text
                        .strip_prefix(b"'")
                        .and_then(|t| t.strip_suffix(b"'"))
                        .or_else(|| text.strip_prefix(b"\"").and_then(|t| t.strip_suffix(b"\"")))
                        .filter(|t| !t.contains(&b'\\'))
                        .map(<[u8]>::to_vec);
                    self.push(unquoted);
                }
                b'X' | b'T' => {
                    let n = self.uint(4)?;
                    let text = self.bytes(n)?;
                    self.push(text);
                }
                0x8c | b'U' => {
                    let n = self.uint(1)?;
                    let text = self.bytes(n)?;
                    self.push(text);
                }
                0x8d => {
                    let n = self.uint(8)?;
                    let text = self.bytes(n)?;
                    self.push(text);
                }
                // Pushes of other values with a length-prefixed payload.
                b'B' | 0x8b => {
                    let n = self.uint(4)?;
                    self.bytes(n)?;
                    self.push(None);
                }
                b'C' | 0x8a => {
                    let n = self.uint(1)?;
                    self.bytes(n)?;
                    self.push(None);
                }
                0x8e | 0x96 => {
                    let n = self.uint(8)?;
                    self.bytes(n)?;
                    self.push(None);
                }
                // Pushes of other values with a fixed or text argument.
                b'J' => {
                    self.uint(4)?;
                    self.push(None);
                }
                b'K' => {
                    self.uint(1)?;
                    self.push(None);
                }
                b'M' => {
                    self.uint(2)?;
                    self.push(None);
                }
                b'G' => {
                    self.uint(8)?;
                    self.push(None);
                }
                b'I' | b'L' | b'F' => {
                    self.line()?;
                    self.push(None);
                }
                b'N' | 0x88 | 0x89 | b')' | b']' | b'}' | 0x8f | b'(' => self.push(None),
                // Imports: checked against the allowlist.
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.import(&module, &name)?;
                    self.push(None);
                }
                b'i' => {
                    // INST: import and call in one; pops to the mark.
                    let module = self.line()?;
                    let name = self.line()?;
                    self.import(&module, &name)?;
                    self.recent.clear();
                    self.push(None);
                }
                0x93 => {
                    // STACK_GLOBAL
                    let (module, name) = match self.recent.as_slice() {
                        [Some(module), Some(name)] => (module.clone(), name.clone()),
                        _ => {
                            return Err(ScanError::Refused(
                                "<STACK_GLOBAL whose module and name are not string constants>"
                                    .into(),
                            ))
                        }
                    };
                    self.import(&module, &name)?;
                    self.recent.clear();
                    self.push(None);
                }
                0x82..=0x84 => {
                    return Err(ScanError::Refused(
                        "<copyreg extension (EXT1/EXT2/EXT4)>".into(),
                    ))
                }
                b'P' => {
                    // PERSID: a storage reference by text id.
                    self.line()?;
                    self.push(None);
                }
                // Opcodes that pop (and maybe push): what is on the stack afterwards is not
                // tracked. None of them can name a callable of its own.
                b'0' | b'1' | b'2' | b'Q' | b'R' | b'a' | b'b' | b'd' | b'e' | b'l' | b'o'
                | b's' | b't' | b'u' | 0x81 | 0x85 | 0x86 | 0x87 | 0x90 | 0x91 | 0x92 | 0x97
                | 0x98 => {
                    self.recent.clear();
                }
                other => {
                    return Err(ScanError::Invalid(format!(
                        "unknown pickle opcode 0x{other:02x}: not a PyTorch checkpoint, or a corrupt one"
                    )))
                }
            }
        }
    }
}

/// A text memo index (`PUT`/`GET` in protocol 0).
fn parse_index(text: &[u8]) -> std::result::Result<u64, ScanError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| ScanError::Invalid("a memo index that is not a number".into()))
}

/// The legacy (PyTorch 0.1.10 to 1.5) magic number as protocol 2 writes it, and as text.
const LEGACY_MAGIC_BYTES: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_MAGIC_TEXT: &[u8] = b"119547037146038801333356";
/// A legacy file's pickles: magic number, protocol version, system info, the saved object
/// and the storage key list (the storages' raw bytes follow).
const LEGACY_PICKLES: usize = 5;

fn scan_stream<R: BufRead>(
    r: &mut R,
    len: u64,
    pickles: usize,
) -> std::result::Result<(), ScanError> {
    let mut remaining = len;
    for _ in 0..pickles {
        let mut scanner = Scanner::new(r, remaining);
        scanner.run()?;
        remaining = scanner.remaining;
    }
    Ok(())
}

/// Refuses a PyTorch checkpoint whose pickle imports anything but what a plain state dict
/// needs (see the module docs), without executing or even building any of it.
///
/// Every pickle [`PytorchReader`] would parse is scanned: each `.pkl` entry of a ZIP
/// checkpoint (PyTorch 1.6+, `data.pkl`), the header and object pickles of a legacy one, or
/// a bare pickle. The pre-0.1.10 TAR layout is refused.
pub fn scan_checkpoint(path: &Path) -> Result<()> {
    let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
    let len = file.metadata().map_err(|e| ModelError::io(path, e))?.len();
    let mut header = Vec::new();
    (&file)
        .take(262)
        .read_to_end(&mut header)
        .map_err(|e| ModelError::io(path, e))?;
    let invalid = |message: String| ModelError::Pytorch {
        path: path.to_path_buf(),
        message,
    };
    if header.starts_with(b"PK\x03\x04") || header.starts_with(b"PK\x05\x06") {
        let mut archive =
            zip::ZipArchive::new(BufReader::new(file)).map_err(|e| invalid(e.to_string()))?;
        let mut pickles = 0;
        for i in 0..archive.len() {
            let entry = archive.by_index(i).map_err(|e| invalid(e.to_string()))?;
            let name = entry
                .name()
                .map_err(|e| invalid(e.to_string()))?
                .into_owned();
            if !name.ends_with(".pkl") {
                continue;
            }
            let size = entry.size();
            if size > pytorch_reader::MAX_PICKLE_SIZE {
                return Err(invalid(format!(
                    "`{}` claims {size} bytes, more than the {} a checkpoint pickle may have",
                    name.escape_debug(),
                    pytorch_reader::MAX_PICKLE_SIZE
                )));
            }
            pickles += 1;
            scan_stream(&mut BufReader::new(entry), size, 1)
                .map_err(|e| e.into_model_error(path))?;
        }
        if pickles == 0 {
            return Err(invalid(
                "a ZIP archive without a data.pkl entry is not a PyTorch checkpoint".into(),
            ));
        }
        return Ok(());
    }
    if header.get(257..262) == Some(b"ustar") {
        return Err(invalid(
            "TAR-format checkpoints (PyTorch before 0.1.10) are not supported; \
             re-save the state dict with a current PyTorch or as safetensors"
                .into(),
        ));
    }
    let window = &header[..header.len().min(64)];
    let legacy = window
        .windows(LEGACY_MAGIC_BYTES.len())
        .any(|w| w == LEGACY_MAGIC_BYTES)
        || window
            .windows(LEGACY_MAGIC_TEXT.len())
            .any(|w| w == LEGACY_MAGIC_TEXT);
    let pickles = if legacy { LEGACY_PICKLES } else { 1 };
    let mut reader = BufReader::new(file);
    std::io::Seek::rewind(&mut reader).map_err(|e| ModelError::io(path, e))?;
    scan_stream(&mut reader, len, pickles).map_err(|e| e.into_model_error(path))
}

/// One or more PyTorch checkpoint files (sharded ones use `pytorch_model.bin.index.json`),
/// each scanned by [`scan_checkpoint`] and parsed by [`PytorchReader`] when opened.
pub struct PytorchSource {
    name: String,
    files: Vec<(PathBuf, u64, PytorchReader)>,
    /// tensor name → index into `files`
    index: BTreeMap<String, usize>,
    hash: String,
}

impl PytorchSource {
    /// Opens a single PyTorch checkpoint file.
    pub fn open_file(path: &Path) -> Result<Self> {
        let mut source = Self {
            name: path.display().to_string(),
            files: Vec::new(),
            index: BTreeMap::new(),
            hash: String::new(),
        };
        source.add_file(path, None)?;
        source.finish_hash()?;
        Ok(source)
    }

    /// Opens a model directory: `pytorch_model.bin`, or the shards listed in
    /// `pytorch_model.bin.index.json`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join(PYTORCH_FILE);
        if single.is_file() {
            return Self::open_file(&single);
        }
        let index_path = dir.join(PYTORCH_INDEX);
        if !index_path.is_file() {
            return Err(ModelError::Source {
                source_spec: dir.display().to_string(),
                message: format!("no {PYTORCH_FILE} or {PYTORCH_INDEX} in this directory"),
            });
        }
        let shards = read_weight_map(&index_path, |path, message| ModelError::Pytorch {
            path,
            message,
        })?;
        let mut source = Self {
            name: dir.display().to_string(),
            files: Vec::new(),
            index: BTreeMap::new(),
            hash: String::new(),
        };
        for (file, tensors) in shards {
            source.add_file(&dir.join(&file), Some(&tensors))?;
        }
        source.finish_hash()?;
        Ok(source)
    }

    fn add_file(&mut self, path: &Path, expected: Option<&[String]>) -> Result<()> {
        scan_checkpoint(path)?;
        let len = std::fs::metadata(path)
            .map_err(|e| ModelError::io(path, e))?
            .len();
        let reader = PytorchReader::new(path).map_err(|e| ModelError::Pytorch {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if let Some(expected) = expected {
            if let Some(missing) = expected.iter().find(|t| reader.get(t).is_none()) {
                return Err(ModelError::Pytorch {
                    path: path.to_path_buf(),
                    message: format!("the index lists `{missing}` in this shard but it is absent"),
                });
            }
        }
        let file_index = self.files.len();
        for name in reader.keys() {
            self.index.insert(name, file_index);
        }
        self.files.push((path.to_path_buf(), len, reader));
        Ok(())
    }

    fn finish_hash(&mut self) -> Result<()> {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut buf = vec![0u8; 1 << 20];
        for (path, _, _) in &self.files {
            let mut file = File::open(path).map_err(|e| ModelError::io(path, e))?;
            loop {
                let n = file.read(&mut buf).map_err(|e| ModelError::io(path, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
        }
        self.hash = format!("xxh3:{:016x}", hasher.digest());
        Ok(())
    }

    /// xxh3-64 over the bytes of every file, in order (as
    /// [`SafetensorsSource::content_hash`](crate::weights::SafetensorsSource::content_hash)).
    pub fn content_hash(&self) -> String {
        self.hash.clone()
    }

    /// Names of every tensor in the checkpoint.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }
}

impl TensorSource for PytorchSource {
    fn source_name(&self) -> String {
        self.name.clone()
    }

    fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn read(&self, name: &str) -> Result<HostTensor> {
        let missing = || ModelError::MissingTensor {
            source_name: self.name.clone(),
            tensor: name.to_owned(),
        };
        let file_index = *self.index.get(name).ok_or_else(missing)?;
        let (path, file_len, reader) = self.files.get(file_index).ok_or_else(missing)?;
        let tensor = reader.get(name).ok_or_else(missing)?;
        let bad = |message: String| ModelError::Pytorch {
            path: path.clone(),
            message,
        };
        let width = match tensor.dtype() {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            other => {
                return Err(bad(format!(
                    "tensor `{name}` has dtype {other:?}; radit reads F32, F16 and BF16"
                )))
            }
        };
        // A view can claim more elements than its storage holds (stride 0); no weight of a
        // real checkpoint is larger than the file it is in.
        let byte_len = tensor
            .shape()
            .iter()
            .try_fold(width, |acc: usize, &d| acc.checked_mul(d))
            .filter(|&n| n as u64 <= *file_len)
            .ok_or_else(|| {
                bad(format!(
                    "tensor `{name}` of shape {:?} would be larger than the file ({file_len} bytes)",
                    tensor.shape()
                ))
            })?;
        let bytes = tensor.read().map_err(|e| bad(e.to_string()))?;
        if bytes.len() != byte_len {
            return Err(bad(format!(
                "tensor `{name}` read {} bytes, expected {byte_len}",
                bytes.len()
            )));
        }
        // The reader returns native-endian bytes.
        let data: Vec<f32> = match tensor.dtype() {
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_ne_bytes([b[0], b[1]]).to_f32())
                .collect(),
            _ => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_ne_bytes([b[0], b[1]]).to_f32())
                .collect(),
        };
        Ok(HostTensor {
            shape: tensor.shape().to_vec(),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(bytes: &[u8]) -> std::result::Result<(), String> {
        scan_stream(&mut &bytes[..], bytes.len() as u64, 1).map_err(|e| match e {
            ScanError::Refused(c) => format!("refused {c}"),
            ScanError::Invalid(m) => format!("invalid {m}"),
            ScanError::Io(e) => format!("io {e}"),
        })
    }

    /// `SHORT_BINUNICODE text; MEMOIZE`, protocol 4 style.
    fn short(text: &str) -> Vec<u8> {
        let mut out = vec![0x8c, text.len() as u8];
        out.extend_from_slice(text.as_bytes());
        out.push(0x94);
        out
    }

    #[test]
    fn allowed_imports_pass() {
        // PROTO 2; GLOBAL collections OrderedDict; EMPTY_TUPLE; REDUCE; STOP
        assert_eq!(scan(b"\x80\x02ccollections\nOrderedDict\nq\x00)R."), Ok(()));
        // STACK_GLOBAL from constants, then again from the memo (BINGET 0, BINGET 1).
        let mut p = vec![0x80, 4];
        p.extend(short("collections"));
        p.extend(short("OrderedDict"));
        p.extend([
            0x93, 0x94, b')', b'R', b'0', b'h', 0, b'h', 1, 0x93, b')', b'R', b'.',
        ]);
        assert_eq!(scan(&p), Ok(()));
    }

    #[test]
    fn other_imports_are_refused_by_name() {
        for (module, name) in [("builtins", "eval"), ("posix", "system"), ("torch", "load")] {
            let mut bytes = vec![0x80, 2, b'c'];
            bytes.extend_from_slice(format!("{module}\n{name}\n)R.").as_bytes());
            assert_eq!(scan(&bytes), Err(format!("refused {module}.{name}")));
        }
        let mut p = vec![0x80, 4];
        p.extend(short("os"));
        p.extend(short("system"));
        p.extend([0x93, b'.']);
        assert_eq!(scan(&p), Err("refused os.system".into()));
        // INST names its class inline.
        assert_eq!(
            scan(b"(ibuiltins\nexec\n."),
            Err("refused builtins.exec".into())
        );
        assert!(scan(b"\x80\x02\x82\x01.").unwrap_err().contains("copyreg"));
    }

    #[test]
    fn stack_global_needs_known_string_operands() {
        // BINPUT-memoized strings resolve; a slot overwritten by a non-string does not.
        let strings =
            b"\x80\x02X\x0b\x00\x00\x00collectionsq\x00X\x0b\x00\x00\x00OrderedDictq\x0100";
        let mut p = strings.to_vec();
        p.extend([b'h', 0, b'h', 1, 0x93, b'.']);
        assert_eq!(scan(&p), Ok(()));
        let mut p = strings.to_vec();
        p.extend([b'N', b'q', 0, b'0', b'h', 0, b'h', 1, 0x93, b'.']);
        assert!(scan(&p).unwrap_err().contains("not string constants"));
        // Computed operands (here the result of a call) are refused.
        let mut p = vec![0x80, 4];
        p.extend(short("collections"));
        p.extend([b')', b'R']);
        p.extend(short("OrderedDict"));
        p.extend([0x93, b'.']);
        assert!(scan(&p).unwrap_err().contains("not string constants"));
        // Mixing PUT and MEMOIZE makes MEMOIZE's slot unknown: memo strings are forgotten.
        let mut p = vec![0x80, 4, b'N', b'q', 7];
        p.extend(short("collections"));
        p.extend(short("OrderedDict"));
        p.extend([b'0', b'0', b'h', 0, b'h', 1, 0x93, b'.']);
        assert!(scan(&p).unwrap_err().contains("not string constants"));
    }

    #[test]
    fn truncated_and_unknown_opcodes_are_invalid() {
        assert!(scan(b"\x80\x02}").unwrap_err().starts_with("invalid"));
        assert!(scan(b"\x80\x02X\xff\xff\xff\x00ab.")
            .unwrap_err()
            .contains("truncated"));
        assert!(scan(b"ccollections\nOrderedDict")
            .unwrap_err()
            .starts_with("invalid"));
        assert!(scan(b"\xff.")
            .unwrap_err()
            .contains("unknown pickle opcode 0xff"));
    }
}
