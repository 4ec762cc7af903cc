//! The line protocol parser: one pass over the body, borrowing where nothing is escaped.
//!
//! [`Parser`] walks a body point by point. After a bad point it resynchronises at the next line
//! (an LF outside a quoted string and not escaped), so a caller can list every bad line.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use super::Precision;
use crate::metric::{FieldValue, Metric, Origin};

/// The longest measurement, tag or field name accepted, in bytes (InfluxDB 3's limit).
pub const MAX_NAME_LEN: usize = 64 * 1024;
/// The longest string field value accepted, in bytes (InfluxDB 3's limit).
pub const MAX_STRING_LEN: usize = 64 * 1024;

/// A field value as parsed, borrowing string values from the body where possible.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// `1.5`
    Float(f64),
    /// `1i`
    Int(i64),
    /// `1u`
    UInt(u64),
    /// `"text"`
    Str(Cow<'a, str>),
    /// `true`
    Bool(bool),
}

impl Value<'_> {
    /// The same value, owning any string it borrowed.
    pub fn to_owned_value(&self) -> Value<'static> {
        match self {
            Value::Float(v) => Value::Float(*v),
            Value::Int(v) => Value::Int(*v),
            Value::UInt(v) => Value::UInt(*v),
            Value::Str(v) => Value::Str(Cow::Owned(v.to_string())),
            Value::Bool(v) => Value::Bool(*v),
        }
    }

    fn same_type(&self, other: &Value<'_>) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    fn to_field(&self) -> FieldValue {
        match self {
            Value::Float(v) => FieldValue::Float(*v),
            Value::Int(v) => FieldValue::Int(*v),
            Value::UInt(v) => FieldValue::UInt(*v),
            Value::Str(v) => FieldValue::Str(v.to_string()),
            Value::Bool(v) => FieldValue::Bool(*v),
        }
    }
}

/// One parsed point, borrowing from the body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Line<'a> {
    /// The measurement, unescaped.
    pub measurement: Cow<'a, str>,
    /// Tags sorted by key, keys unique.
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Fields, keys unique (a repeated field keeps its last value).
    pub fields: Vec<(Cow<'a, str>, Value<'a>)>,
    /// The timestamp as written, in the write's precision; `None` when the line has none.
    pub timestamp: Option<i64>,
    /// The text of each float field as written, in field order, so it can be copied instead of
    /// formatted again; empty when it no longer lines up with the fields (a repeated field).
    pub float_text: Vec<&'a str>,
    /// How much of the text as written [`super::encode_line`] can copy instead of encoding.
    pub verbatim: Verbatim<'a>,
}

/// The parts of a line whose text as written is what encoding would write for them, so
/// [`super::encode_line`] copies them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Verbatim<'a> {
    /// Nothing: the line is encoded from its parts.
    #[default]
    No,
    /// No name needs escaping, and the field set is this text (integers and booleans in their
    /// shortest form, no field merged or dropped); the tags were reordered or spaced
    /// differently.
    Fields {
        /// The field set, and the timestamp as `stamp` says.
        text: &'a str,
        /// The length of ` TIMESTAMP` at the end of `text` (one space, the timestamp as
        /// written in its shortest form), or 0.
        stamp: usize,
    },
    /// Measurement, tags and fields: this text (tags in order, one space before the fields).
    Whole {
        /// The text from the measurement to the end of the field set, and the timestamp as
        /// `stamp` says.
        text: &'a str,
        /// The length of the field set.
        fields: usize,
        /// The length of ` TIMESTAMP` at the end of `text`, or 0 (as in [`Verbatim::Fields`]).
        stamp: usize,
    },
}

impl<'a> Verbatim<'a> {
    /// What is left to copy once the tags have been reordered.
    fn tags_reordered(self) -> Verbatim<'a> {
        match self {
            Verbatim::Whole {
                text,
                fields,
                stamp,
            } => Verbatim::Fields {
                text: &text[text.len() - stamp - fields..],
                stamp,
            },
            other => other,
        }
    }
}

impl Line<'_> {
    /// The timestamp in ns: as written scaled by `precision`, or `default_time` when absent.
    ///
    /// # Errors
    /// [`ParseErrorKind::TimestampOutOfRange`] when the scaled timestamp does not fit in an i64.
    pub fn time_ns(&self, precision: Precision, default_time: i64) -> Result<i64, ParseErrorKind> {
        match self.timestamp {
            Some(ts) => ts
                .checked_mul(precision.nanos())
                .ok_or(ParseErrorKind::TimestampOutOfRange),
            None => Ok(default_time),
        }
    }

    /// An owned metric: the timestamp scaled to ns by `precision`, or `default_time` when absent.
    ///
    /// # Errors
    /// [`ParseErrorKind::TimestampOutOfRange`] when the scaled timestamp does not fit in an i64.
    pub fn to_metric(
        &self,
        precision: Precision,
        default_time: i64,
        origin: &Arc<Origin>,
    ) -> Result<Metric, ParseErrorKind> {
        let time = self.time_ns(precision, default_time)?;
        Ok(Metric {
            name: self.measurement.to_string(),
            tags: self
                .tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fields: self
                .fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_field()))
                .collect(),
            time,
            origin: Arc::clone(origin),
        })
    }
}

/// What is wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The body is not valid UTF-8.
    InvalidUtf8,
    /// The line has a measurement but nothing after it.
    MissingFields,
    /// The measurement is empty.
    EmptyMeasurement,
    /// A tag has no `=`, or an empty key or value.
    BadTag,
    /// A field has no `=` or an empty key.
    BadField,
    /// A field value is missing.
    MissingFieldValue,
    /// A name holds a character that cannot appear unescaped there.
    InvalidCharacter(&'static str, char),
    /// A name ends in a backslash.
    TrailingBackslash(&'static str),
    /// A name or string is longer than the limit.
    TooLong(&'static str, usize),
    /// A number field is malformed or out of range.
    InvalidNumber(String),
    /// A field value is not a number, a quoted string, or one of t, T, true, True, TRUE, f, F,
    /// false, False, FALSE.
    InvalidValue(String),
    /// A string field has no closing quote.
    UnterminatedString,
    /// Something other than `,`, a space or the end of the line follows a field value.
    UnexpectedAfterValue(char),
    /// The timestamp is not a signed decimal integer.
    InvalidTimestamp(String),
    /// The timestamp, scaled by the precision, does not fit in an i64 nanosecond count.
    TimestampOutOfRange,
    /// The same tag key appears twice.
    DuplicateTag(String),
    /// The same field appears twice with different types.
    FieldTypeConflict(String),
    /// `time` used as a tag key.
    TimeTag,
    /// `time` as the only field.
    TimeField,
    /// A name used both as a tag key and a field key.
    TagFieldClash(String),
    /// The line is longer than the configured maximum.
    LineTooLong(usize),
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ParseErrorKind::*;
        match self {
            InvalidUtf8 => write!(f, "invalid UTF-8"),
            MissingFields => write!(
                f,
                "missing fields: a point needs at least one field after the measurement and tags"
            ),
            EmptyMeasurement => write!(f, "missing measurement name"),
            BadTag => write!(
                f,
                "invalid tag: a tag is key=value with a non-empty key and value"
            ),
            BadField => write!(
                f,
                "invalid field: a field is key=value with a non-empty key"
            ),
            MissingFieldValue => write!(f, "missing field value after `=`"),
            InvalidCharacter(what, c) => write!(f, "invalid character {c:?} in {what}"),
            TrailingBackslash(what) => write!(f, "{what} must not end with a backslash"),
            TooLong(what, max) => write!(f, "{what} is longer than {max} bytes"),
            InvalidNumber(v) => write!(
                f,
                "invalid number {v:?}: use 1.5 (float), 1i (integer) or 1u (unsigned)"
            ),
            InvalidValue(v) => write!(
                f,
                "invalid field value {v:?}: not a number, boolean or double-quoted string"
            ),
            UnterminatedString => write!(f, "unterminated string: missing closing double quote"),
            UnexpectedAfterValue(c) => write!(
                f,
                "unexpected {c:?} after field value: expected `,`, a space or end of line"
            ),
            InvalidTimestamp(v) => write!(f, "invalid timestamp {v:?}: expected an integer"),
            TimestampOutOfRange => write!(f, "timestamp out of range for the write's precision"),
            DuplicateTag(k) => write!(f, "duplicate tags: tag {k:?} appears twice"),
            FieldTypeConflict(k) => write!(
                f,
                "field type conflict: field {k:?} appears twice with different types"
            ),
            TimeTag => write!(f, "invalid tag key: input tag \"time\" is invalid"),
            TimeField => write!(f, "invalid field name: input field \"time\" is invalid"),
            TagFieldClash(k) => write!(f, "{k:?} is used both as a tag key and a field key"),
            LineTooLong(max) => write!(f, "line is longer than max_line_size ({max} bytes)"),
        }
    }
}

/// A bad line: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The line (1-based) the bad point starts on.
    pub line: usize,
    /// The byte (1-based) where the problem was found, counted from the start of `line` (for a
    /// point whose string value holds an LF, across that LF).
    pub column: usize,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.kind
        )
    }
}

impl std::error::Error for ParseError {}

// Byte classes for the table-driven scans of names.
const SPACE: u8 = 1; // ' '
const COMMA: u8 = 2; // ','
const EQUALS: u8 = 4; // '='
const BACKSLASH: u8 = 8; // '\\'
const NEWLINE: u8 = 16; // '\n'
const BAD: u8 = 32; // '\t', '\r', '\0': never valid unescaped in a name

const fn class_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    t[b' ' as usize] = SPACE;
    t[b',' as usize] = COMMA;
    t[b'=' as usize] = EQUALS;
    t[b'\\' as usize] = BACKSLASH;
    t[b'\n' as usize] = NEWLINE;
    t[b'\t' as usize] = BAD;
    t[b'\r' as usize] = BAD;
    t[0] = BAD;
    t
}
static CLASS: [u8; 256] = class_table();

/// Which element a name is, for escapes and messages.
#[derive(Clone, Copy)]
enum Element {
    Measurement,
    TagKey,
    TagValue,
    FieldKey,
}

impl Element {
    fn label(self) -> &'static str {
        match self {
            Element::Measurement => "measurement",
            Element::TagKey => "tag key",
            Element::TagValue => "tag value",
            Element::FieldKey => "field key",
        }
    }

    /// Classes that end the element.
    fn stops(self) -> u8 {
        match self {
            Element::Measurement => SPACE | COMMA,
            Element::TagKey | Element::FieldKey => SPACE | COMMA | EQUALS,
            // An unescaped `=` in a tag value is an error, so it stops the scan too.
            Element::TagValue => SPACE | COMMA | EQUALS,
        }
    }

    /// Whether `\c` is an escape in this element (otherwise the backslash is kept).
    fn escapes(self, c: u8) -> bool {
        match self {
            Element::Measurement => matches!(c, b' ' | b',' | b'\\'),
            _ => matches!(c, b' ' | b',' | b'=' | b'\\'),
        }
    }
}

/// A streaming parser over a whole body; see the module docs.
///
/// ```
/// use heliograph::line_protocol::Parser;
/// let mut p = Parser::new("cpu,host=a usage=0.5,n=3i 1700000000000000000\n");
/// let line = p.next().unwrap().unwrap();
/// assert_eq!(line.measurement, "cpu");
/// assert_eq!(line.timestamp, Some(1_700_000_000_000_000_000));
/// assert!(p.next().is_none());
/// ```
#[derive(Debug)]
pub struct Parser<'a> {
    src: &'a str,
    pos: usize,
    /// The 1-based number of the physical line `pos` is on.
    line_no: usize,
    /// Byte offset where the physical line `line_no` starts.
    line_start: usize,
    /// The line the last point returned started on.
    last_line: usize,
    max_line: usize,
}

type Step<T> = Result<T, (usize, ParseErrorKind)>;

impl<'a> Parser<'a> {
    /// A parser over `src` with no line-length limit.
    pub fn new(src: &'a str) -> Self {
        Parser {
            src,
            pos: 0,
            line_no: 1,
            line_start: 0,
            last_line: 0,
            max_line: 0,
        }
    }

    /// Refuses points longer than `max` bytes (0: no limit).
    pub fn with_max_line(mut self, max: usize) -> Self {
        self.max_line = max;
        self
    }

    /// The byte offset the parser has reached (just past the last point returned).
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// The line (1-based) the point last returned by [`Self::next_into`] started on.
    pub fn last_line(&self) -> usize {
        self.last_line
    }

    /// Parses the next point into `line`, reusing its vectors; `None` at the end of the body.
    ///
    /// After an error the parser has moved to the next line, so calling again goes on.
    pub fn next_into(&mut self, line: &mut Line<'a>) -> Option<Result<(), ParseError>> {
        let bytes = self.src.as_bytes();
        // Skip blank lines, comments and leading blanks.
        loop {
            while self.pos < bytes.len() && matches!(bytes[self.pos], b' ' | b'\t') {
                self.pos += 1;
            }
            if self.pos >= bytes.len() {
                return None;
            }
            match bytes[self.pos] {
                b'\n' => self.newline_at(self.pos),
                b'\r' if bytes.get(self.pos + 1) == Some(&b'\n') => self.newline_at(self.pos + 1),
                b'#' => match memchr::memchr(b'\n', &bytes[self.pos..]) {
                    Some(i) => self.newline_at(self.pos + i),
                    None => {
                        self.pos = bytes.len();
                        return None;
                    }
                },
                _ => break,
            }
        }
        let start = self.pos;
        let start_line = self.line_no;
        self.last_line = start_line;
        let start_column = start - self.line_start + 1;
        // Tags and fields are written over the previous point's (see `put`).
        line.float_text.clear();
        line.timestamp = None;
        line.verbatim = Verbatim::No;
        match self.point(line) {
            Ok(end) => {
                // The parser is already past this point: report it without resynchronising.
                let checked = if self.max_line > 0 && end - start > self.max_line {
                    Err(ParseErrorKind::LineTooLong(self.max_line))
                } else {
                    check(line)
                };
                let kind = match checked {
                    Ok(()) => return Some(Ok(())),
                    Err(kind) => kind,
                };
                Some(Err(ParseError {
                    line: start_line,
                    column: start_column,
                    kind,
                }))
            }
            Err((at, kind)) => {
                line.tags.clear();
                line.fields.clear();
                // `line_start` still belongs to the point's first line: nothing moved it yet.
                let column = at - self.line_start + 1;
                self.resync(start);
                Some(Err(ParseError {
                    line: start_line,
                    column,
                    kind,
                }))
            }
        }
    }

    fn newline_at(&mut self, lf: usize) {
        self.pos = lf + 1;
        self.line_no += 1;
        self.line_start = self.pos;
    }

    /// Moves past the line that starts at `start`: the first LF outside quotes and not escaped.
    fn resync(&mut self, start: usize) {
        let bytes = self.src.as_bytes();
        let mut i = start;
        let mut quoted = false;
        while let Some(off) = memchr::memchr3(b'\n', b'"', b'\\', &bytes[i..]) {
            let j = i + off;
            match bytes[j] {
                b'\\' => {
                    if bytes.get(j + 1) == Some(&b'\n') {
                        self.line_no += 1;
                    }
                    i = j + 2;
                }
                b'"' => {
                    quoted = !quoted;
                    i = j + 1;
                }
                _ if quoted => {
                    self.line_no += 1;
                    i = j + 1;
                }
                _ => {
                    self.newline_at(j);
                    return;
                }
            }
            if i >= bytes.len() {
                break;
            }
        }
        self.pos = bytes.len();
        self.line_start = self.pos;
    }

    /// Parses one point starting at `self.pos`; returns the offset of its end (before the LF).
    fn point(&mut self, line: &mut Line<'a>) -> Step<usize> {
        let bytes = self.src.as_bytes();
        let head = self.pos;
        let (measurement, mut i) = self.name(self.pos, Element::Measurement)?;
        if measurement.is_empty() {
            return Err((i, ParseErrorKind::EmptyMeasurement));
        }
        line.measurement = measurement;
        // Tags.
        let mut tags = 0;
        while i < bytes.len() && bytes[i] == b',' {
            let (key, j) = self.name(i + 1, Element::TagKey)?;
            if key.is_empty() || bytes.get(j) != Some(&b'=') {
                return Err((j, ParseErrorKind::BadTag));
            }
            let (value, k) = self.name(j + 1, Element::TagValue)?;
            if value.is_empty() || bytes.get(k) == Some(&b'=') {
                return Err((k, ParseErrorKind::BadTag));
            }
            put(&mut line.tags, tags, (key, value));
            tags += 1;
            i = k;
        }
        line.tags.truncate(tags);
        // One or more spaces, then the field set.
        let before_spaces = i;
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        if i == before_spaces || i >= bytes.len() || matches!(bytes[i], b'\n' | b'\r') {
            return Err((i, ParseErrorKind::MissingFields));
        }
        let one_space = i == before_spaces + 1;
        let fields_at = i;
        let mut canonical = true;
        let mut strings = false;
        let mut fields = 0;
        loop {
            let (key, j) = self.name(i, Element::FieldKey)?;
            if key.is_empty() || bytes.get(j) != Some(&b'=') {
                return Err((j, ParseErrorKind::BadField));
            }
            let (value, k) = self.value(j + 1)?;
            let token = &self.src[j + 1..k];
            match &value {
                Value::Float(_) => line.float_text.push(token),
                Value::Int(_) | Value::UInt(_) => canonical &= shortest_integer(token),
                Value::Bool(b) => canonical &= token == if *b { "true" } else { "false" },
                Value::Str(_) => strings = true,
            }
            put(&mut line.fields, fields, (key, value));
            fields += 1;
            i = k;
            match bytes.get(i) {
                Some(b',') => i += 1,
                _ => break,
            }
        }
        line.fields.truncate(fields);
        // No backslash: every name and string is written as it is read.
        let fields_end = i;
        let escapes = memchr::memchr(b'\\', &bytes[head..i]).is_some();
        let plain = canonical && !escapes;
        // Optional timestamp, then the end of the line.
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        let ts_start = i;
        i = scan(bytes, i, |w| eq(w, b' ') | below(w, 0x20));
        while i < bytes.len() && !matches!(bytes[i], b' ' | b'\n' | b'\r') {
            i += 1;
        }
        if i > ts_start {
            let text = &self.src[ts_start..i];
            line.timestamp = Some(parse_timestamp(text.as_bytes()).ok_or_else(|| {
                (
                    ts_start,
                    ParseErrorKind::InvalidTimestamp(truncate(text).to_owned()),
                )
            })?);
        }
        if plain {
            // One space and the timestamp in its shortest form: copied too where the write's
            // precision is ns.
            let stamped = i > ts_start && ts_start == fields_end + 1 && {
                let ts = &bytes[ts_start..i];
                !matches!(ts, [b'0', _, ..] | [b'-', b'0', ..])
            };
            let to = if stamped { i } else { fields_end };
            let stamp = to - fields_end;
            line.verbatim = if one_space {
                Verbatim::Whole {
                    text: &self.src[head..to],
                    fields: fields_end - fields_at,
                    stamp,
                }
            } else {
                Verbatim::Fields {
                    text: &self.src[fields_at..to],
                    stamp,
                }
            };
        }
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        let end = i;
        // LFs inside string values or escaped in names do not end the point, but they do
        // start new physical lines: count them so later errors name the right line. (Without
        // a string or a backslash there can be none.)
        let start = self.pos;
        let inner_lf = if strings || escapes {
            memchr::memrchr(b'\n', &bytes[start..end])
        } else {
            None
        };
        if let Some(last) = inner_lf {
            self.line_no += memchr::memchr_iter(b'\n', &bytes[start..end]).count();
            self.line_start = start + last + 1;
        }
        match bytes.get(i) {
            None => self.pos = i,
            Some(b'\n') => self.newline_at(i),
            Some(b'\r') if bytes.get(i + 1) == Some(&b'\n') => self.newline_at(i + 1),
            Some(&c) => {
                let kind = if line.timestamp.is_some() {
                    ParseErrorKind::InvalidTimestamp(truncate(&self.src[ts_start..]).to_owned())
                } else {
                    ParseErrorKind::UnexpectedAfterValue(c as char)
                };
                return Err((i, kind));
            }
        }
        Ok(end)
    }

    /// Scans a name from `at` to its first unescaped stop character; returns it and where it ends.
    ///
    /// Inlined for the common name, plain bytes up to a stop: the caller then reads the result
    /// from registers. Returned through memory, its loads stalled on the callee's narrower
    /// stores (a store-forwarding stall, a quarter of the parser's time on typical metrics).
    #[inline(always)]
    fn name(&self, at: usize, el: Element) -> Step<(Cow<'a, str>, usize)> {
        let bytes = self.src.as_bytes();
        let mut i = scan(bytes, at, |w| {
            eq(w, b' ') | eq(w, b',') | eq(w, b'=') | eq(w, b'\\') | below(w, 0x20)
        });
        while i < bytes.len() && CLASS[bytes[i] as usize] == 0 {
            i += 1;
        }
        let plain_end = bytes
            .get(i)
            .is_none_or(|&c| CLASS[c as usize] & (el.stops() | NEWLINE) != 0);
        if plain_end && i - at <= MAX_NAME_LEN {
            return Ok((Cow::Borrowed(&self.src[at..i]), i));
        }
        self.escaped_name(at, i, el)
    }

    /// [`Self::name`] for names with escapes, backslashes or characters refused in names; the
    /// bytes from `at` to `plain` are plain.
    #[inline(never)]
    fn escaped_name(&self, at: usize, plain: usize, el: Element) -> Step<(Cow<'a, str>, usize)> {
        let bytes = self.src.as_bytes();
        let stops = el.stops() | NEWLINE;
        let mut i = plain;
        let mut owned: Option<String> = None;
        let mut copied = at; // bytes before this are in `owned` (when it exists)
        loop {
            while i < bytes.len() && CLASS[bytes[i] as usize] == 0 {
                i += 1;
            }
            if i >= bytes.len() {
                break;
            }
            let class = CLASS[bytes[i] as usize];
            if class & BACKSLASH != 0 {
                match bytes.get(i + 1) {
                    Some(&c) if el.escapes(c) => {
                        // Names are short: one allocation with room to spare covers most.
                        let s = owned.get_or_insert_with(|| String::with_capacity(i - at + 48));
                        s.push_str(&self.src[copied..i]);
                        s.push(c as char);
                        i += 2;
                        copied = i;
                    }
                    Some(&c) if c >= 0x80 => i += 1, // keep the backslash; the char is a name byte
                    Some(_) => i += 2,               // not an escape here: keep both bytes
                    None => i += 1,
                }
                continue;
            }
            if class & stops != 0 {
                break;
            }
            // BAD, or a stop class not used by this element (never happens: EQUALS is the only
            // class outside a measurement's stops, and it is a plain character there).
            if class & EQUALS != 0 {
                i += 1;
                continue;
            }
            let c = bytes[i] as char;
            return Err((i, ParseErrorKind::InvalidCharacter(el.label(), c)));
        }
        let name: Cow<'a, str> = match owned {
            None => Cow::Borrowed(&self.src[at..i]),
            Some(mut s) => {
                s.push_str(&self.src[copied..i]);
                Cow::Owned(s)
            }
        };
        if name.len() > MAX_NAME_LEN {
            return Err((at, ParseErrorKind::TooLong(el.label(), MAX_NAME_LEN)));
        }
        if name.ends_with('\\') {
            return Err((i, ParseErrorKind::TrailingBackslash(el.label())));
        }
        Ok((name, i))
    }

    /// Parses a field value at `at`; returns it and the offset just past it.
    fn value(&self, at: usize) -> Step<(Value<'a>, usize)> {
        let bytes = self.src.as_bytes();
        match bytes.get(at) {
            None | Some(b' ' | b',' | b'\n' | b'\r') => {
                Err((at, ParseErrorKind::MissingFieldValue))
            }
            Some(b'"') => self.string(at + 1),
            Some(_) => {
                let mut end = scan(bytes, at, |w| eq(w, b' ') | eq(w, b',') | below(w, 0x20));
                while end < bytes.len() && !matches!(bytes[end], b' ' | b',' | b'\n' | b'\r') {
                    end += 1;
                }
                let token = &self.src[at..end];
                let value = match bytes[at] {
                    b'0'..=b'9' | b'-' | b'+' | b'.' => parse_number(token)
                        .ok_or_else(|| ParseErrorKind::InvalidNumber(truncate(token).into())),
                    _ => parse_bool(token)
                        .map(Value::Bool)
                        .ok_or_else(|| ParseErrorKind::InvalidValue(truncate(token).into())),
                };
                value.map(|v| (v, end)).map_err(|kind| (at, kind))
            }
        }
    }

    /// Parses a string value whose opening quote is just before `at`.
    fn string(&self, at: usize) -> Step<(Value<'a>, usize)> {
        let bytes = self.src.as_bytes();
        let mut i = at;
        let mut owned: Option<String> = None;
        let mut copied = at;
        loop {
            let Some(off) = memchr::memchr2(b'"', b'\\', &bytes[i..]) else {
                return Err((at - 1, ParseErrorKind::UnterminatedString));
            };
            let j = i + off;
            if bytes[j] == b'"' {
                let value = match owned {
                    None => Cow::Borrowed(&self.src[at..j]),
                    Some(mut s) => {
                        s.push_str(&self.src[copied..j]);
                        Cow::Owned(s)
                    }
                };
                if value.len() > MAX_STRING_LEN {
                    return Err((at, ParseErrorKind::TooLong("string field", MAX_STRING_LEN)));
                }
                let end = j + 1;
                return match bytes.get(end) {
                    None | Some(b' ' | b',' | b'\n' | b'\r') => Ok((Value::Str(value), end)),
                    Some(&c) => Err((end, ParseErrorKind::UnexpectedAfterValue(c as char))),
                };
            }
            // A backslash: `\"` and `\\` are escapes; any other backslash is literal.
            match bytes.get(j + 1) {
                Some(&c @ (b'"' | b'\\')) => {
                    let s = owned.get_or_insert_with(|| String::with_capacity(j - at + 64));
                    s.push_str(&self.src[copied..j]);
                    s.push(c as char);
                    i = j + 2;
                    copied = i;
                }
                Some(_) => i = j + 1,
                None => return Err((at - 1, ParseErrorKind::UnterminatedString)),
            }
        }
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Line<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut line = Line::default();
        self.next_into(&mut line).map(|r| r.map(|()| line))
    }
}

/// Eight bytes at a time from `i` while `flags` finds none of interest in them; returns the
/// offset of the first flagged byte, or of the last whole eight. Callers finish byte by byte
/// from there, so a byte flagged that is not of interest only ends the fast scan early.
#[inline(always)]
fn scan(bytes: &[u8], mut i: usize, flags: impl Fn(u64) -> u64) -> usize {
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let found = flags(word);
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `word` equal to `c` (exact up to the first such byte; bytes
/// after it may be flagged too, which [`scan`] never looks at).
#[inline(always)]
fn eq(word: u64, c: u8) -> u64 {
    let x = word ^ ONES.wrapping_mul(u64::from(c));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The high bit of each byte of `word` below `n` (`n` <= 0x80; as exact as [`eq`]).
#[inline(always)]
fn below(word: u64, n: u8) -> u64 {
    word.wrapping_sub(ONES.wrapping_mul(u64::from(n))) & !word & HIGHS
}

/// `v[k] = item`, or a push when `v` is that long. Points of a body mostly have the same
/// shape, so their tags and fields are written over the previous point's: a push built the
/// pair on the stack with 8-byte stores and copied it with 16-byte loads, which stall on such
/// stores (a fifth of the parser's time on typical metrics).
#[inline(always)]
fn put<T>(v: &mut Vec<T>, k: usize, item: T) {
    match v.get_mut(k) {
        Some(slot) => *slot = item,
        None => v.push(item),
    }
}

/// Line-level rules: sorted unique tags, no `time` tag, field duplicates, tag/field clashes.
fn check(line: &mut Line<'_>) -> Result<(), ParseErrorKind> {
    if !line.tags.is_sorted_by(|a, b| key_le(&a.0, &b.0)) {
        line.tags.sort_by(|a, b| key_cmp(&a.0, &b.0));
        line.verbatim = line.verbatim.tags_reordered();
    }
    for pair in line.tags.windows(2) {
        if key_eq(&pair[0].0, &pair[1].0) {
            return Err(ParseErrorKind::DuplicateTag(pair[0].0.to_string()));
        }
    }
    if line.tags.iter().any(|(k, _)| k == "time") {
        return Err(ParseErrorKind::TimeTag);
    }
    if dedup_fields(&mut line.fields)? {
        line.verbatim = Verbatim::No;
    }
    if let Some(i) = line.fields.iter().position(|(k, _)| k == "time") {
        if line.fields.len() == 1 {
            return Err(ParseErrorKind::TimeField);
        }
        // InfluxDB drops a `time` field silently when other fields remain.
        line.fields.remove(i);
        line.verbatim = Verbatim::No;
    }
    let floats = line
        .fields
        .iter()
        .filter(|(_, v)| matches!(v, Value::Float(_)))
        .count();
    if floats != line.float_text.len() {
        line.float_text.clear(); // fields were merged or dropped: format the values instead
    }
    if !line.tags.is_empty() {
        for (key, _) in &line.fields {
            let clash = if line.tags.len() <= 8 {
                line.tags.iter().any(|(k, _)| key_eq(k, key))
            } else {
                line.tags
                    .binary_search_by(|(k, _)| k.as_ref().cmp(key.as_ref()))
                    .is_ok()
            };
            if clash {
                return Err(ParseErrorKind::TagFieldClash(key.to_string()));
            }
        }
    }
    Ok(())
}

/// `a <= b`, deciding on the first byte where it can (keys are short and mostly differ there;
/// this runs for every line).
fn key_le(a: &str, b: &str) -> bool {
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x < y,
        _ => a <= b,
    }
}

/// `a.cmp(b)`, deciding on the first byte where it can (as [`key_le`]).
fn key_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

/// `a == b`, ruling out most unequal keys on their length and last byte before comparing.
fn key_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().last() == b.as_bytes().last() && a == b
}

/// A repeated field keeps its last value if the types agree; different types are an error.
/// Returns whether fields were merged.
fn dedup_fields(fields: &mut Vec<(Cow<'_, str>, Value<'_>)>) -> Result<bool, ParseErrorKind> {
    if fields.len() < 2 {
        return Ok(false);
    }
    let has_dup = if fields.len() <= 16 {
        (1..fields.len()).any(|i| fields[..i].iter().any(|(k, _)| key_eq(k, &fields[i].0)))
    } else {
        let mut keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_ref()).collect();
        keys.sort_unstable();
        keys.windows(2).any(|w| w[0] == w[1])
    };
    if !has_dup {
        return Ok(false);
    }
    let mut kept: Vec<(Cow<'_, str>, Value<'_>)> = Vec::with_capacity(fields.len());
    for (key, value) in fields.drain(..) {
        match kept.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) if slot.1.same_type(&value) => slot.1 = value,
            Some(_) => return Err(ParseErrorKind::FieldTypeConflict(key.to_string())),
            None => kept.push((key, value)),
        }
    }
    // Lifetimes: `kept` borrows nothing from `fields`, only moves out of it.
    *fields = kept;
    Ok(true)
}

/// Whether an integer token (`-12i`, `7u`) is written as itoa writes its value: no leading
/// zero, no `-0`.
fn shortest_integer(token: &str) -> bool {
    let digits = &token.as_bytes()[..token.len().saturating_sub(1)];
    match digits {
        [b'0'] => true,
        [b'0', ..] | [b'-', b'0', ..] => false,
        _ => true,
    }
}

fn parse_bool(token: &str) -> Option<bool> {
    match token {
        "t" | "T" | "true" | "True" | "TRUE" => Some(true),
        "f" | "F" | "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// `-?digits(.digits)?([eE][+-]?digits)?` as a float, `-?digits i` as an integer, `digits u` as
/// an unsigned integer. Out of range (including floats that would be infinite) is `None`.
fn parse_number(token: &str) -> Option<Value<'static>> {
    let b = token.as_bytes();
    match b.last()? {
        b'i' => {
            let digits = &token[..token.len() - 1];
            let unsigned = digits.strip_prefix('-').unwrap_or(digits);
            if unsigned.is_empty() || !unsigned.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok().map(Value::Int)
        }
        b'u' => {
            let digits = &token[..token.len() - 1];
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok().map(Value::UInt)
        }
        _ => {
            if let Some(v) = short_decimal(b) {
                return Some(Value::Float(v));
            }
            if !is_float_syntax(b) {
                return None;
            }
            let v: f64 = token.parse().ok()?;
            v.is_finite().then_some(Value::Float(v))
        }
    }
}

/// Powers of ten exactly representable as f64.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// `-?digits(.digits)?` with at most 15 digits in all (most metric values), as `str::parse`
/// reads it; `None` for anything else. The digits make an integer below 2^53 and the divisor is
/// an exact power of ten, so one division is correctly rounded.
fn short_decimal(b: &[u8]) -> Option<f64> {
    let (negative, rest) = match b {
        [b'-', rest @ ..] => (true, rest),
        all => (false, all),
    };
    if rest.len() > 16 {
        return None;
    }
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut point = None;
    for (i, &c) in rest.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(c - b'0');
                digits += 1;
            }
            b'.' if point.is_none() && i > 0 => point = Some(digits),
            _ => return None,
        }
    }
    let scale = match point {
        Some(before) if before == digits => return None, // `1.`: no digit after the point
        Some(before) => digits - before,
        None => 0,
    };
    if digits == 0 || digits > 15 {
        return None;
    }
    // Below 10^15, so through i64: one conversion instruction, where u64 takes six.
    let v = mantissa as i64 as f64 / POW10[scale];
    Some(if negative { -v } else { v })
}

fn is_float_syntax(b: &[u8]) -> bool {
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

/// A decimal i64 (`-` allowed, nothing else): `None` on any other byte or on overflow, as
/// `str::parse` gives. One pass
/// over the digits; it runs for every line written and every line compacted.
pub(crate) fn parse_timestamp(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        all => (false, all),
    };
    let zeros = digits.len().saturating_sub(19);
    if digits[..zeros].iter().any(|&c| c != b'0') {
        return None; // more than 19 significant digits
    }
    let digits = &digits[zeros..];
    if digits.is_empty() {
        return None;
    }
    // The leading digits one at a time, then eight at a time (19 digits fit in a u64).
    let (head, tail) = digits.split_at(digits.len() % 8);
    let mut v: u64 = 0;
    for &c in head {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + u64::from(d);
    }
    for chunk in tail.chunks_exact(8) {
        v = v * 100_000_000 + eight_digits(chunk.try_into().expect("8 bytes"))?;
    }
    if negative {
        0i64.checked_sub_unsigned(v)
    } else {
        i64::try_from(v).ok()
    }
}

/// Eight ASCII digits as a number, `None` if any byte is not a digit: all eight at once in a
/// u64 (the checks and multiplications of simdjson's eight-digit parser).
fn eight_digits(chunk: [u8; 8]) -> Option<u64> {
    let v = u64::from_le_bytes(chunk);
    let high = v & 0xF0F0_F0F0_F0F0_F0F0;
    let carried = v.wrapping_add(0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0;
    if high | (carried >> 4) != 0x3333_3333_3333_3333 {
        return None;
    }
    let v = (v & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(2561) >> 8;
    let v = (v & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601) >> 16;
    Some((v & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001) >> 32)
}

/// At most 64 bytes of `s` (on a char boundary), for messages about long tokens.
fn truncate(s: &str) -> &str {
    let s = s.split(['\n', ' ']).next().unwrap_or(s);
    if s.len() <= 64 {
        return s;
    }
    let mut end = 64;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod scanning {
    use super::{below, eq, scan};
    use proptest::prelude::*;

    proptest! {
        /// The fast scan stops at the first byte of interest, or short of it only where fewer
        /// than eight bytes are left, for any bytes (UTF-8 or not, control bytes, 0x80 and up).
        #[test]
        fn the_fast_scan_stops_at_the_first_byte_of_interest(
            bytes in proptest::collection::vec(any::<u8>(), 0..40),
            from in 0usize..40,
            set in 0usize..3,
        ) {
            let from = from.min(bytes.len());
            let (found, wanted): (usize, fn(u8) -> bool) = match set {
                0 => (
                    scan(&bytes, from, |w| eq(w, b' ') | eq(w, b',') | eq(w, b'=') | eq(w, b'\\') | below(w, 0x20)),
                    |b| matches!(b, b' ' | b',' | b'=' | b'\\') || b < 0x20,
                ),
                1 => (scan(&bytes, from, |w| eq(w, b' ') | eq(w, b',') | below(w, 0x20)), |b| matches!(b, b' ' | b',') || b < 0x20),
                _ => (scan(&bytes, from, |w| eq(w, b' ') | below(w, 0x20)), |b| b <= b' '),
            };
            let first = (from..bytes.len()).find(|&i| wanted(bytes[i])).unwrap_or(bytes.len());
            prop_assert!(found <= first, "{found} past {first} in {bytes:?} from {from}");
            prop_assert!(found == first || found + 8 > bytes.len(), "{found} short of {first} in {bytes:?} from {from}");
        }
    }
}

#[cfg(test)]
mod timestamps {
    use super::{parse_number, parse_timestamp, Value};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn timestamps_of_any_digits_parse_as_str_parse_does(
            text in "-?[0-9]{0,24}|-?[0-9]{0,10}[0-9a/: ]{1,2}[0-9]{0,10}",
            n in any::<i64>(),
        ) {
            prop_assert_eq!(parse_timestamp(text.as_bytes()), text.parse::<i64>().ok());
            let n = n.to_string();
            prop_assert_eq!(parse_timestamp(n.as_bytes()), n.parse::<i64>().ok());
        }

        #[test]
        fn floats_parse_as_str_parse_does(
            text in "-?[0-9]{0,18}(\\.[0-9]{0,18})?|-?[0-9]{1,3}\\.?[0-9]{0,3}[eE.x-]?[0-9]{0,3}",
            v in any::<f64>(),
        ) {
            let want = if super::is_float_syntax(text.as_bytes()) {
                text.parse::<f64>().ok().filter(|v| v.is_finite())
            } else {
                None
            };
            let got = parse_number(&text).map(|v| match v {
                Value::Float(f) => f,
                other => panic!("{other:?}"),
            });
            prop_assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "{:?}", text);
            if v.is_finite() {
                let text = v.to_string();
                let got = parse_number(&text);
                prop_assert_eq!(got, Some(Value::Float(v)), "{:?}", text);
            }
        }
    }

    #[test]
    fn timestamps_parse_as_str_parse_does() {
        let cases = [
            "0",
            "-0",
            "1",
            "-1",
            "1700000000000000000",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999",
            "00000000000000000000001",
            "-0000000000000000000000042",
            "",
            "-",
            "+5",
            "1e9",
            "12 ",
            "１",
        ];
        for c in cases {
            assert_eq!(
                parse_timestamp(c.as_bytes()),
                c.parse::<i64>().ok().filter(|_| !c.starts_with('+')),
                "{c:?}"
            );
        }
    }
}
