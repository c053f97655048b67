//! The JSON answers of `/api/v1/query`, `/api/v1/query_range` and `/api/v1/series`, and what
//! they decode into.
//!
//! Kept apart from the HTTP client so that decoding can be tested and benchmarked on bodies
//! alone. The series answer is decoded as a stream, keeping only names and label names, because
//! large clusters answer with hundreds of megabytes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::PrometheusError;

/// One series as discovery needs it: its name and the names of its other labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeriesInfo {
    /// `__name__`.
    pub name: Arc<str>,
    /// Label names other than `__name__`, sorted. Shared between series with the same set.
    pub labels: Arc<[Box<str>]>,
}

/// The distinct (name, label-name set) pairs of a `/api/v1/series` answer.
#[derive(Clone, Debug, Default)]
pub struct SeriesSet {
    /// Distinct series shapes, in first-seen order.
    pub series: Vec<SeriesInfo>,
    /// How many series the answer held before de-duplication.
    pub raw_count: usize,
}

/// One sample of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// All labels of the sample, `__name__` included when Prometheus kept it.
    pub labels: BTreeMap<String, String>,
    /// Sample time, Unix seconds.
    pub timestamp: f64,
    /// Sample value; may be NaN or infinite.
    pub value: f64,
}

/// The `data` of an instant query.
#[derive(Clone, Debug, PartialEq)]
pub enum QueryResult {
    /// `resultType: vector`.
    Vector(Vec<Sample>),
    /// `resultType: scalar`; the labels are empty.
    Scalar(Sample),
    /// `resultType: matrix` (never usable by the metrics APIs).
    Matrix,
    /// `resultType: string` (never usable by the metrics APIs).
    String,
}

impl QueryResult {
    /// `vector`, `scalar`, `matrix` or `string`.
    pub fn type_name(&self) -> &'static str {
        match self {
            QueryResult::Vector(_) => "vector",
            QueryResult::Scalar(_) => "scalar",
            QueryResult::Matrix => "matrix",
            QueryResult::String => "string",
        }
    }
}

/// The envelope of every API answer.
#[derive(Deserialize)]
pub(super) struct Envelope<T> {
    status: String,
    #[serde(default = "Option::default")]
    data: Option<T>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl<T> Envelope<T> {
    /// The `data` of a success answer, else Prometheus' error.
    pub(super) fn into_data(self, url: &str) -> Result<T, PrometheusError> {
        if self.status != "success" {
            return Err(PrometheusError::Api {
                url: url.to_string(),
                error_type: self.error_type.unwrap_or_else(|| "unknown".into()),
                error: self.error.unwrap_or_default(),
            });
        }
        self.data.ok_or_else(|| PrometheusError::Decode {
            url: url.to_string(),
            message: "a success answer without data".into(),
        })
    }
}

/// The error for a non-2xx answer: Prometheus' own error JSON when the body is that, otherwise
/// the status and the start of the body.
pub(super) fn error_from_body(url: &str, status: u16, body: &[u8]) -> PrometheusError {
    if let Ok(env) = serde_json::from_slice::<Envelope<IgnoredAny>>(body)
        && env.status == "error"
    {
        return PrometheusError::Api {
            url: url.to_string(),
            error_type: env.error_type.unwrap_or_else(|| format!("HTTP {status}")),
            error: env.error.unwrap_or_default(),
        };
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(300)])
        .trim()
        .to_string();
    PrometheusError::Api {
        url: url.to_string(),
        error_type: format!("HTTP {status}"),
        error: if text.is_empty() {
            "(empty body)".into()
        } else {
            text
        },
    }
}

/// The `data` of a query or range query, decoded in one pass. Prometheus (as VictoriaMetrics and
/// Thanos do) writes `resultType` before `result`, so `result` decodes straight into its type;
/// only a `result` that comes first is held as a `serde_json::Value` until the type is known.
/// Through a `Value` every time, the labels of a 500-sample answer were allocated twice, and
/// that was a tenth of the adapter's CPU per request.
struct RawQueryData {
    result_type: String,
    result: RawResult,
}

enum RawResult {
    Vector(Vec<RawSample>),
    Scalar((f64, String)),
    Matrix(Vec<RawRangeSeries>),
    /// `string`, which no caller serves.
    Skipped,
    /// `result` before `resultType`.
    Early(serde_json::Value),
}

impl<'de> Deserialize<'de> for RawQueryData {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RawQueryDataVisitor)
    }
}

impl RawQueryData {
    /// The type and the result decoded by it, also when `result` came first.
    fn typed(self) -> Result<(String, RawResult), serde_json::Error> {
        let result = match self.result {
            RawResult::Early(value) => match self.result_type.as_str() {
                "vector" => RawResult::Vector(serde_json::from_value(value)?),
                "scalar" => RawResult::Scalar(serde_json::from_value(value)?),
                "matrix" => RawResult::Matrix(serde_json::from_value(value)?),
                _ => RawResult::Skipped,
            },
            decoded => decoded,
        };
        Ok((self.result_type, result))
    }
}

struct RawQueryDataVisitor;

impl<'de> Visitor<'de> for RawQueryDataVisitor {
    type Value = RawQueryData;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("the data of a query answer")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawQueryData, A::Error> {
        let mut result_type: Option<String> = None;
        let mut result = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "resultType" => result_type = Some(map.next_value()?),
                "result" => {
                    result = Some(match result_type.as_deref() {
                        Some("vector") => RawResult::Vector(map.next_value()?),
                        Some("scalar") => RawResult::Scalar(map.next_value()?),
                        Some("matrix") => RawResult::Matrix(map.next_value()?),
                        Some(_) => {
                            map.next_value::<IgnoredAny>()?;
                            RawResult::Skipped
                        }
                        None => RawResult::Early(map.next_value()?),
                    })
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let result_type =
            result_type.ok_or_else(|| serde::de::Error::missing_field("resultType"))?;
        let result = result.ok_or_else(|| serde::de::Error::missing_field("result"))?;
        Ok(RawQueryData {
            result_type,
            result,
        })
    }
}

#[derive(Deserialize)]
struct RawSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

fn parse_value(url: &str, raw: &str) -> Result<f64, PrometheusError> {
    raw.parse::<f64>().map_err(|_| PrometheusError::Decode {
        url: url.to_string(),
        message: format!("sample value {raw:?} is not a number"),
    })
}

/// Decodes an instant-query answer.
pub fn decode_query(url: &str, status: u16, body: &[u8]) -> Result<QueryResult, PrometheusError> {
    if !(200..300).contains(&status) {
        return Err(error_from_body(url, status, body));
    }
    let decode_err = |e: serde_json::Error| PrometheusError::Decode {
        url: url.to_string(),
        message: e.to_string(),
    };
    let env: Envelope<RawQueryData> = serde_json::from_slice(body).map_err(decode_err)?;
    let data = env.into_data(url)?;
    let (result_type, result) = data.typed().map_err(decode_err)?;
    match (result_type.as_str(), result) {
        ("vector", RawResult::Vector(raw)) => raw
            .into_iter()
            .map(|s| {
                Ok(Sample {
                    labels: s.metric,
                    timestamp: s.value.0,
                    value: parse_value(url, &s.value.1)?,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(QueryResult::Vector),
        ("scalar", RawResult::Scalar((timestamp, value))) => Ok(QueryResult::Scalar(Sample {
            labels: BTreeMap::new(),
            timestamp,
            value: parse_value(url, &value)?,
        })),
        ("matrix", _) => Ok(QueryResult::Matrix),
        ("string", _) => Ok(QueryResult::String),
        (other, _) => Err(PrometheusError::Decode {
            url: url.to_string(),
            message: format!("unknown resultType {other:?}"),
        }),
    }
}

/// One series of a range query: its labels and its samples in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeSeries {
    /// All labels of the series, `__name__` included when Prometheus kept it.
    pub labels: BTreeMap<String, String>,
    /// `(Unix seconds, value)` pairs; values may be NaN or infinite.
    pub samples: Vec<(f64, f64)>,
}

#[derive(Deserialize)]
struct RawRangeSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Decodes a range-query answer. Prometheus answers every range query with a matrix (a scalar
/// expression too); anything else is a decode error naming what came back.
pub fn decode_query_range(
    url: &str,
    status: u16,
    body: &[u8],
) -> Result<Vec<RangeSeries>, PrometheusError> {
    if !(200..300).contains(&status) {
        return Err(error_from_body(url, status, body));
    }
    let decode_err = |e: serde_json::Error| PrometheusError::Decode {
        url: url.to_string(),
        message: e.to_string(),
    };
    let env: Envelope<RawQueryData> = serde_json::from_slice(body).map_err(decode_err)?;
    let data = env.into_data(url)?;
    if data.result_type != "matrix" {
        return Err(PrometheusError::Decode {
            url: url.to_string(),
            message: format!(
                "a range query answered with resultType {:?} instead of \"matrix\"",
                data.result_type
            ),
        });
    }
    let raw = match data.typed().map_err(decode_err)? {
        (_, RawResult::Matrix(raw)) => raw,
        _ => Vec::new(),
    };
    raw.into_iter()
        .map(|s| {
            let samples = s
                .values
                .into_iter()
                .map(|(t, v)| Ok((t, parse_value(url, &v)?)))
                .collect::<Result<Vec<_>, PrometheusError>>()?;
            Ok(RangeSeries {
                labels: s.metric,
                samples,
            })
        })
        .collect()
}

/// Fast hash maps for the collector's interning tables: they are hashed once or more per
/// series, millions of times per relist at scale; randomly seeded per process.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A shared, sorted set of label names.
type LabelNames = Arc<[Box<str>]>;

/// Builds a [`SeriesSet`] while the series array streams past.
///
/// Names and label names are interned as they are read (from the decoder's scratch buffer,
/// never copied into a `String` of their own), so a series whose name and label names were
/// seen before costs no allocation at all: at a million series that is most of the decoding
/// time.
#[derive(Default)]
struct SeriesCollector {
    out: SeriesSet,
    /// Label name → id.
    label_ids: FastMap<Box<str>, u32>,
    /// Label names by id.
    label_names: Vec<Box<str>>,
    /// Sorted label-name ids → (set id, the shared sorted names).
    label_sets: FastMap<Vec<u32>, (u32, LabelNames)>,
    /// Metric name → id.
    name_ids: FastMap<Arc<str>, u32>,
    /// Metric names by id.
    names: Vec<Arc<str>>,
    /// (name id, set id) pairs already in `out`.
    seen: HashSet<(u32, u32), foldhash::fast::RandomState>,
    /// The label-name ids of the series being read.
    scratch: Vec<u32>,
    /// The piece being decoded, when an answer is decoded in pieces.
    piece: u32,
    /// For each shape in `out`, the piece it was first seen in.
    first_piece: Vec<u32>,
}

impl SeriesCollector {
    fn label_id(&mut self, label: &str) -> u32 {
        if let Some(id) = self.label_ids.get(label) {
            return *id;
        }
        let id = self.label_names.len() as u32;
        self.label_names.push(label.into());
        self.label_ids.insert(label.into(), id);
        id
    }

    fn name_id(&mut self, name: &str) -> u32 {
        if let Some(id) = self.name_ids.get(name) {
            return *id;
        }
        let id = self.names.len() as u32;
        let shared: Arc<str> = name.into();
        self.names.push(shared.clone());
        self.name_ids.insert(shared, id);
        id
    }

    /// Adds the series named `name` whose label-name ids are in `scratch`.
    fn add(&mut self, name: u32) {
        self.out.raw_count += 1;
        self.scratch.sort_unstable();
        self.scratch.dedup();
        let (set, labels) = match self.label_sets.get(self.scratch.as_slice()) {
            Some((set, labels)) => (*set, labels),
            None => {
                let mut sorted: Vec<Box<str>> = self
                    .scratch
                    .iter()
                    .map(|id| self.label_names[*id as usize].clone())
                    .collect();
                sorted.sort();
                let set = self.label_sets.len() as u32;
                let entry = self
                    .label_sets
                    .entry(self.scratch.clone())
                    .or_insert((set, sorted.into()));
                (set, &entry.1)
            }
        };
        if self.seen.insert((name, set)) {
            self.first_piece.push(self.piece);
            self.out.series.push(SeriesInfo {
                name: self.names[name as usize].clone(),
                labels: labels.clone(),
            });
        }
    }
}

/// A key of a series' label set: `__name__`, or the id of an interned label name.
enum SeriesKey {
    Name,
    Label(u32),
}

/// Reads a label set's key straight from the decoder's buffer into the collector's table.
struct KeySeed<'a>(&'a mut SeriesCollector);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = SeriesKey;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<SeriesKey, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = SeriesKey;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a label name")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SeriesKey, E> {
        Ok(if v == "__name__" {
            SeriesKey::Name
        } else {
            SeriesKey::Label(self.0.label_id(v))
        })
    }
}

/// Reads a metric name straight from the decoder's buffer into the collector's table.
struct NameSeed<'a>(&'a mut SeriesCollector);

impl<'de> DeserializeSeed<'de> for NameSeed<'_> {
    type Value = u32;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<u32, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameSeed<'_> {
    type Value = u32;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a metric name")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u32, E> {
        Ok(self.0.name_id(v))
    }
}

struct TopLevel<'a>(&'a mut SeriesCollector);
struct DataArray<'a>(&'a mut SeriesCollector);
struct OneSeries<'a>(&'a mut SeriesCollector);

#[derive(Default)]
struct TopLevelResult {
    status: Option<String>,
    error_type: Option<String>,
    error: Option<String>,
    saw_data: bool,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = TopLevelResult;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = TopLevelResult;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a Prometheus API answer object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = TopLevelResult::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "status" => out.status = Some(map.next_value()?),
                "errorType" => out.error_type = map.next_value()?,
                "error" => out.error = map.next_value()?,
                "data" => {
                    map.next_value_seed(DataArray(self.0))?;
                    out.saw_data = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

impl<'de> DeserializeSeed<'de> for DataArray<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DataArray<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of label sets")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(OneSeries(self.0))?.is_some() {}
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for OneSeries<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OneSeries<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a label set")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut name = None;
        self.0.scratch.clear();
        while let Some(key) = map.next_key_seed(KeySeed(self.0))? {
            match key {
                SeriesKey::Name => name = Some(map.next_value_seed(NameSeed(self.0))?),
                SeriesKey::Label(id) => {
                    map.next_value::<IgnoredAny>()?;
                    self.0.scratch.push(id);
                }
            }
        }
        // A series without a name cannot become a metric; skip it rather than fail the relist.
        if let Some(name) = name {
            self.0.add(name);
        }
        Ok(())
    }
}

/// How the series array of a large answer is cut for decoding threads: pieces of about this
/// many bytes, so that memory stays bounded by a few pieces whatever the answer's size.
const PIECE_BYTES: usize = 512 * 1024;

/// The start of every series answer that Prometheus, Thanos and VictoriaMetrics write. Only an
/// answer that starts so is decoded in pieces; any other shape is decoded in one pass.
const SUCCESS_PREFIX: &[u8] = br#"{"status":"success","data":["#;

/// Where two series meet in the array: `},{"`. It cannot occur inside a JSON string (a quote
/// there is escaped, so the byte before it is `\`), and series are flat objects of strings, so
/// outside strings it occurs only between two series. That makes it a safe place to cut.
const BETWEEN_SERIES: &[u8] = br#"},{""#;

/// Decodes a `/api/v1/series` answer from a reader.
///
/// A large answer is cut between series and its pieces are decoded on several threads while
/// the rest still arrives (issue 13: the backend's answer dominates discovery, and decoding
/// after it is what the adapter adds). A small answer, or one shaped other than the usual
/// `{"status":"success","data":[`, is decoded in one pass.
pub fn decode_series<R: std::io::Read>(
    url: &str,
    mut reader: R,
) -> Result<SeriesSet, PrometheusError> {
    let mut first = Vec::with_capacity(PIECE_BYTES);
    let ended = fill(&mut reader, &mut first, PIECE_BYTES).map_err(|e| read_error(url, e))?;
    let threads = decoding_threads();
    // Without a cut in the first piece (pretty-printed, or a proxy's own shape) pieces could
    // not be cut at all: decode in one pass rather than buffer the whole answer.
    if ended
        || threads < 2
        || !first.starts_with(SUCCESS_PREFIX)
        || memchr::memmem::find(&first, BETWEEN_SERIES).is_none()
    {
        use std::io::Read as _;
        return decode_series_in_one_pass(url, std::io::Cursor::new(first).chain(reader));
    }
    // Keep the prefix's `[`: every piece then reads as an array of series.
    first.drain(..SUCCESS_PREFIX.len() - 1);
    decode_series_in_pieces(url, first, reader, threads)
}

/// Threads that decode pieces: the CPUs this process may use (cgroup limits included), at
/// most four, since reading the stream becomes the bound beyond that.
fn decoding_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// A failed read of the answer (the connection broke, or the size limit was passed).
fn read_error(url: &str, e: std::io::Error) -> PrometheusError {
    PrometheusError::Decode {
        url: url.to_string(),
        message: e.to_string(),
    }
}

/// Reads until `buf` holds `want` bytes or the reader ends; says whether it ended.
fn fill<R: std::io::Read>(reader: &mut R, buf: &mut Vec<u8>, want: usize) -> std::io::Result<bool> {
    let mut chunk = [0u8; 64 * 1024];
    while buf.len() < want {
        let n = match reader.read(&mut chunk[..(want - buf.len()).min(64 * 1024)]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(true);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(false)
}

fn decode_series_in_one_pass<R: std::io::Read>(
    url: &str,
    reader: R,
) -> Result<SeriesSet, PrometheusError> {
    let mut collector = SeriesCollector::default();
    let mut de =
        serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(64 * 1024, reader));
    let top = TopLevel(&mut collector)
        .deserialize(&mut de)
        .and_then(|t| de.end().map(|_| t))
        .map_err(|e| PrometheusError::Decode {
            url: url.to_string(),
            message: e.to_string(),
        })?;
    check_top_level(url, top)?;
    Ok(collector.out)
}

/// The answer's verdict: Prometheus' error, or a success that carried no data.
fn check_top_level(url: &str, top: TopLevelResult) -> Result<(), PrometheusError> {
    if top.status.as_deref() != Some("success") {
        return Err(PrometheusError::Api {
            url: url.to_string(),
            error_type: top.error_type.unwrap_or_else(|| "unknown".into()),
            error: top.error.unwrap_or_default(),
        });
    }
    if !top.saw_data {
        return Err(PrometheusError::Decode {
            url: url.to_string(),
            message: "a success answer without data".into(),
        });
    }
    Ok(())
}

/// One piece for a decoding thread: its place in the answer and its bytes, `[` + series. The
/// last piece holds the end of the array and the rest of the answer.
struct Piece {
    index: u32,
    bytes: Vec<u8>,
    last: bool,
}

/// Decodes a success answer whose `[` opens `buf`, in pieces cut between series.
fn decode_series_in_pieces<R: std::io::Read>(
    url: &str,
    mut buf: Vec<u8>,
    mut reader: R,
    threads: usize,
) -> Result<SeriesSet, PrometheusError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let failed = AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Piece>(threads);
    let rx = std::sync::Mutex::new(rx);
    let (read, decoded) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| decode_pieces(url, &rx, &failed)))
            .collect();
        let read = (|| {
            let (mut index, mut want) = (0u32, PIECE_BYTES);
            loop {
                if fill(&mut reader, &mut buf, want)? {
                    tx.send(Piece {
                        index,
                        bytes: buf,
                        last: true,
                    })
                    .ok();
                    return Ok(());
                }
                // A piece ends at a series' `}`; the rest, from the next `{`, starts the next.
                // A single series longer than a piece just makes this one longer.
                let Some(cut) = memchr::memmem::rfind(&buf[1..], BETWEEN_SERIES).map(|i| i + 1)
                else {
                    want = buf.len() + PIECE_BYTES;
                    continue;
                };
                want = PIECE_BYTES;
                let mut next = Vec::with_capacity(PIECE_BYTES + buf.len() - cut);
                next.push(b'[');
                next.extend_from_slice(&buf[cut + 2..]);
                buf.truncate(cut + 1);
                let piece = Piece {
                    index,
                    bytes: std::mem::replace(&mut buf, next),
                    last: false,
                };
                index += 1;
                // A thread that failed stops the reading: the answer is an error already.
                if tx.send(piece).is_err() || failed.load(Ordering::Relaxed) {
                    return Ok(());
                }
            }
        })();
        drop(tx);
        let decoded: Vec<_> = workers
            .into_iter()
            .map(|w| w.join().expect("a series decoding thread panicked"))
            .collect();
        (read, decoded)
    });
    read.map_err(|e| read_error(url, e))?;
    let mut parts = Vec::with_capacity(decoded.len());
    let mut top = None;
    for result in decoded {
        let (collector, last) = result?;
        top = top.or(last);
        parts.push(collector);
    }
    let Some(mut top) = top else {
        return Err(PrometheusError::Decode {
            url: url.to_string(),
            message: "the answer ended before its series array did".into(),
        });
    };
    // The prefix said success and held the data; a later `status` can only contradict it.
    top.status.get_or_insert_with(|| "success".into());
    top.saw_data = true;
    check_top_level(url, top)?;
    Ok(merge_pieces(parts))
}

/// A decoding thread: its pieces go into one collector, so names and label sets are interned
/// once per thread. Returns the collector and, from the last piece, the answer's other keys.
fn decode_pieces(
    url: &str,
    pieces: &std::sync::Mutex<std::sync::mpsc::Receiver<Piece>>,
    failed: &std::sync::atomic::AtomicBool,
) -> Result<(SeriesCollector, Option<TopLevelResult>), PrometheusError> {
    let mut collector = SeriesCollector::default();
    let mut top = None;
    loop {
        let piece = match pieces.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => break,
        };
        let Ok(mut piece) = piece else { break };
        collector.piece = piece.index;
        let result = if piece.last {
            // `{"data":` + `[`series`]`, then the answer's remaining keys and its `}`.
            let mut whole = Vec::with_capacity(piece.bytes.len() + 8);
            whole.extend_from_slice(br#"{"data":"#);
            whole.extend_from_slice(&piece.bytes);
            let mut de = serde_json::Deserializer::from_slice(&whole);
            TopLevel(&mut collector)
                .deserialize(&mut de)
                .and_then(|t| de.end().map(|_| t))
                .map(|t| top = Some(t))
        } else {
            piece.bytes.push(b']');
            let mut de = serde_json::Deserializer::from_slice(&piece.bytes);
            DataArray(&mut collector)
                .deserialize(&mut de)
                .and_then(|()| de.end())
        };
        if let Err(e) = result {
            failed.store(true, std::sync::atomic::Ordering::Relaxed);
            // Keep taking pieces so the reader never waits on a full channel.
            while let Ok(rx) = pieces.lock() {
                if rx.recv().is_err() {
                    break;
                }
            }
            return Err(PrometheusError::Decode {
                url: url.to_string(),
                message: e.to_string(),
            });
        }
    }
    Ok((collector, top))
}

/// Joins the threads' collectors into one set in the answer's order: a shape is placed where
/// it first occurs, and equal label sets share one allocation again.
fn merge_pieces(parts: Vec<SeriesCollector>) -> SeriesSet {
    let mut out = SeriesSet::default();
    let mut all = Vec::new();
    for part in parts {
        out.raw_count += part.out.raw_count;
        all.extend(part.first_piece.into_iter().zip(part.out.series));
    }
    // Stable: within a piece, a thread's shapes are already in the answer's order.
    all.sort_by_key(|(piece, _)| *piece);
    let mut label_sets: HashSet<LabelNames> = HashSet::new();
    let mut seen: HashSet<SeriesInfo> = HashSet::new();
    for (_, mut info) in all {
        if seen.contains(&info) {
            continue;
        }
        match label_sets.get(&info.labels) {
            Some(shared) => info.labels = shared.clone(),
            None => {
                label_sets.insert(info.labels.clone());
            }
        }
        seen.insert(info.clone());
        out.series.push(info);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_reduced_to_names_and_shared_label_sets() {
        let body = br#"{"status":"success","data":[
            {"__name__":"http_requests_total","namespace":"a","pod":"p1"},
            {"__name__":"http_requests_total","pod":"p2","namespace":"a"},
            {"__name__":"up","namespace":"a","pod":"p1"},
            {"namespace":"a"}
        ],"warnings":["x"]}"#;
        let set = decode_series("u", &body[..]).unwrap();
        assert_eq!(set.raw_count, 3);
        assert_eq!(set.series.len(), 2);
        assert_eq!(&*set.series[0].name, "http_requests_total");
        assert_eq!(
            set.series[0]
                .labels
                .iter()
                .map(|s| &**s)
                .collect::<Vec<_>>(),
            ["namespace", "pod"]
        );
        assert!(Arc::ptr_eq(&set.series[0].labels, &set.series[1].labels));
    }

    #[test]
    fn escaped_names_and_any_label_order_make_the_same_shape() {
        // A reader, as discovery streams it: names are read from the decoder's buffer, so
        // escapes must come out decoded and the order of keys must not matter.
        let body = br#"{"status":"success","data":[
            {"pod":"p1","__name__":"http_\u0072equests_total","namespace":"a"},
            {"namespace":"b","pod":"p2","__name__":"http_requests_total"},
            {"__name__":"http_requests_total","na\u006despace":"c","pod":"p3"},
            {"__name__":"http_requests_total","namespace":"c"},
            {"__name__":"up","pod":"p3","namespace":"c","pod":"dup"}
        ]}"#;
        let set = decode_series("u", std::io::BufReader::with_capacity(7, &body[..])).unwrap();
        assert_eq!(set.raw_count, 5);
        let shapes: Vec<(String, Vec<String>)> = set
            .series
            .iter()
            .map(|s| {
                (
                    s.name.to_string(),
                    s.labels.iter().map(|l| l.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(
            shapes,
            [
                (
                    "http_requests_total".into(),
                    vec!["namespace".into(), "pod".into()]
                ),
                ("http_requests_total".into(), vec!["namespace".into()]),
                ("up".into(), vec!["namespace".into(), "pod".into()]),
            ]
        );
        assert!(Arc::ptr_eq(&set.series[0].labels, &set.series[2].labels));
        assert!(Arc::ptr_eq(&set.series[0].name, &set.series[1].name));
    }

    /// A series answer large enough for many pieces, with shapes that first appear late, keys
    /// in varied order, escapes, and `},{"` inside label values.
    fn many_series(n: usize, suffix: &str) -> Vec<u8> {
        let mut body = String::from(r#"{"status":"success","data":["#);
        for i in 0..n {
            if i > 0 {
                body.push(',');
            }
            let name = format!("m_{}", i * 7 / n);
            match i % 3 {
                0 => body.push_str(&format!(
                    r#"{{"__name__":"{name}","namespace":"ns-{i}","pod":"p\"}},{{\"{i}"}}"#
                )),
                1 => body.push_str(&format!(
                    r#"{{"pod":"p{i}","__name__":"{name}","namespace":"n"}}"#
                )),
                _ => body.push_str(&format!(r#"{{"__name__":"{name}","j\u006fb":"x{i}"}}"#)),
            }
        }
        body.push(']');
        body.push_str(suffix);
        body.push('}');
        body.into_bytes()
    }

    fn shapes(set: &SeriesSet) -> Vec<(String, Vec<String>)> {
        set.series
            .iter()
            .map(|s| {
                (
                    s.name.to_string(),
                    s.labels.iter().map(|l| l.to_string()).collect(),
                )
            })
            .collect()
    }

    /// Drives the piecewise decoder as `decode_series` would on a large answer.
    fn in_pieces(body: &[u8], threads: usize) -> Result<SeriesSet, PrometheusError> {
        let mut reader = body;
        let mut first = Vec::new();
        assert!(!fill(&mut reader, &mut first, PIECE_BYTES).unwrap());
        first.drain(..SUCCESS_PREFIX.len() - 1);
        decode_series_in_pieces("u", first, reader, threads)
    }

    #[test]
    fn an_answer_decoded_in_pieces_equals_one_pass_in_order_and_sharing() {
        let body = many_series(60_000, r#","warnings":["a},{\"b"]"#);
        assert!(body.len() > 4 * PIECE_BYTES, "{} bytes", body.len());
        let whole = decode_series_in_one_pass("u", &body[..]).unwrap();
        for threads in [2, 3] {
            let pieces = in_pieces(&body, threads).unwrap();
            assert_eq!(pieces.raw_count, 60_000);
            assert_eq!(shapes(&pieces), shapes(&whole));
            // Shapes that first appear late in the answer are in their place, not the end.
            assert_eq!(pieces.series.len(), 7 * 2);
            let a = &pieces.series[0].labels;
            let same = pieces.series.iter().filter(|s| s.labels == *a);
            assert!(same.clone().count() > 1);
            assert!(same.into_iter().all(|s| Arc::ptr_eq(&s.labels, a)));
        }
        // The public entry takes the same path on this machine's CPUs, whatever their number.
        assert_eq!(
            shapes(&decode_series("u", &body[..]).unwrap()),
            shapes(&whole)
        );
    }

    #[test]
    fn broken_pieces_and_broken_streams_are_errors_without_hanging() {
        let mut body = many_series(60_000, "");
        // Garbage between two series in the middle: the piece holding it fails the answer.
        let mid = body.len() / 2;
        let comma = mid
            + body[mid..]
                .windows(4)
                .position(|w| w == BETWEEN_SERIES)
                .unwrap()
            + 1;
        body[comma] = b'#';
        let err = in_pieces(&body, 2).unwrap_err();
        assert!(matches!(err, PrometheusError::Decode { .. }), "{err}");
        // A status other than success at the end contradicts the prefix.
        let body = many_series(60_000, r#","status":"error","error":"late""#);
        let err = in_pieces(&body, 2).unwrap_err().to_string();
        assert!(err.contains("late"), "{err}");
        // Cut short: the array never ends.
        let body = many_series(60_000, "");
        assert!(in_pieces(&body[..body.len() * 2 / 3], 2).is_err());
        // A reader that fails mid-answer: its error, not a hang.
        struct Failing<'a>(&'a [u8]);
        impl std::io::Read for Failing<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Err(std::io::Error::other("answer larger than the limit"));
                }
                let n = buf.len().min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let err = decode_series("u", Failing(&body[..body.len() / 2]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("larger than the limit"), "{err}");
    }

    #[test]
    fn series_errors_and_garbage_are_reported() {
        let err = decode_series(
            "u",
            &br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#[..],
        )
        .unwrap_err();
        assert!(err.to_string().contains("bad_data: parse error"), "{err}");
        assert!(matches!(
            decode_series("u", &b"<html>"[..]).unwrap_err(),
            PrometheusError::Decode { .. }
        ));
        assert!(
            decode_series("u", &br#"{"status":"success","data":[{"__name__":1}]}"#[..]).is_err()
        );
    }

    #[test]
    fn vectors_scalars_and_special_values_decode() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"pod":"a"},"value":[1700000000.5,"0.25"]},
            {"metric":{"pod":"b"},"value":[1700000000.5,"NaN"]},
            {"metric":{"pod":"c"},"value":[1700000000.5,"+Inf"]}]}}"#;
        let QueryResult::Vector(v) = decode_query("u", 200, body).unwrap() else {
            panic!("not a vector")
        };
        assert_eq!(v[0].value, 0.25);
        assert!(v[1].value.is_nan());
        assert_eq!(v[2].value, f64::INFINITY);
        assert_eq!(v[0].timestamp, 1700000000.5);
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1.0,"3"]}}"#;
        assert!(
            matches!(decode_query("u", 200, scalar).unwrap(), QueryResult::Scalar(s) if s.value == 3.0)
        );
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert_eq!(decode_query("u", 200, matrix).unwrap(), QueryResult::Matrix);
    }

    #[test]
    fn a_result_before_its_type_decodes_as_one_after_it() {
        let first = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"pod":"a","namespace":"web"},"value":[1700000000.5,"2"]}]}}"#;
        let reordered = br#"{"data":{"result":[
            {"value":[1700000000.5,"2"],"metric":{"namespace":"web","pod":"a"}}],
            "resultType":"vector"},"status":"success"}"#;
        let expected = decode_query("u", 200, first).unwrap();
        assert_eq!(decode_query("u", 200, reordered).unwrap(), expected);
        let QueryResult::Vector(v) = expected else {
            panic!("not a vector")
        };
        assert_eq!(v[0].labels["namespace"], "web");
        let scalar = br#"{"status":"success","data":{"result":[1.0,"3"],"resultType":"scalar"}}"#;
        assert!(
            matches!(decode_query("u", 200, scalar).unwrap(), QueryResult::Scalar(s) if s.value == 3.0)
        );
        for (body, missing) in [
            (
                &br#"{"status":"success","data":{"resultType":"vector"}}"#[..],
                "result",
            ),
            (
                &br#"{"status":"success","data":{"result":[]}}"#[..],
                "resultType",
            ),
        ] {
            let err = decode_query("u", 200, body).unwrap_err().to_string();
            assert!(err.contains(missing), "{err}");
        }
        let wrong = br#"{"status":"success","data":{"resultType":"vector","result":[1.0,"3"]}}"#;
        assert!(decode_query("u", 200, wrong).is_err());
    }

    #[test]
    fn matrices_decode_and_other_answers_are_errors() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"queue":"a"},"values":[[1700000000,"1"],[1700000015,"NaN"],[1700000030,"2.5"]]},
            {"metric":{},"values":[]}]}}"#;
        let m = decode_query_range("u", 200, body).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].labels["queue"], "a");
        assert_eq!(m[0].samples[0], (1700000000.0, 1.0));
        assert!(m[0].samples[1].1.is_nan());
        assert_eq!(m[0].samples[2], (1700000030.0, 2.5));
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        let err = decode_query_range("u", 200, vector)
            .unwrap_err()
            .to_string();
        assert!(err.contains("instead of \"matrix\""), "{err}");
        let bad = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"x"]]}]}}"#;
        assert!(
            decode_query_range("u", 200, bad)
                .unwrap_err()
                .to_string()
                .contains("not a number")
        );
        let err = decode_query_range(
            "u",
            422,
            br#"{"status":"error","errorType":"execution","error":"too many samples"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("execution: too many samples"), "{err}");
        assert!(decode_query_range("u", 200, b"<html>").is_err());
    }

    #[test]
    fn error_answers_keep_prometheus_words() {
        let body = br#"{"status":"error","errorType":"bad_data","error":"1:5: parse error"}"#;
        let err = decode_query("u", 400, body).unwrap_err().to_string();
        assert!(err.contains("bad_data: 1:5: parse error"), "{err}");
        let err = decode_query("u", 502, b"Bad Gateway")
            .unwrap_err()
            .to_string();
        assert!(err.contains("HTTP 502: Bad Gateway"), "{err}");
        let err = decode_query("u", 200, br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a number"), "{err}");
    }
}
