//! GGUF metadata values, borrowed from the file (strings and arrays are views into its bytes).

use alloc::vec::Vec;
use core::fmt;

use super::cursor::Cursor;

/// The type tag of a metadata value, as numbered by the GGUF format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// `uint8`
    U8 = 0,
    /// `int8`
    I8 = 1,
    /// `uint16`
    U16 = 2,
    /// `int16`
    I16 = 3,
    /// `uint32`
    U32 = 4,
    /// `int32`
    I32 = 5,
    /// `float32`
    F32 = 6,
    /// `bool` (one byte, 0 or 1)
    Bool = 7,
    /// `string` (u64 length + UTF-8 bytes)
    String = 8,
    /// `array` (u32 element type + u64 count + elements)
    Array = 9,
    /// `uint64`
    U64 = 10,
    /// `int64`
    I64 = 11,
    /// `float64`
    F64 = 12,
}

impl ValueType {
    /// The type with GGUF id `id`.
    pub const fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::U8,
            1 => Self::I8,
            2 => Self::U16,
            3 => Self::I16,
            4 => Self::U32,
            5 => Self::I32,
            6 => Self::F32,
            7 => Self::Bool,
            8 => Self::String,
            9 => Self::Array,
            10 => Self::U64,
            11 => Self::I64,
            12 => Self::F64,
            _ => return None,
        })
    }

    /// The GGUF id of the type.
    pub const fn id(self) -> u32 {
        self as u32
    }

    /// Lower-case name as the GGUF specification writes it (`uint32`, `string`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Self::U8 => "uint8",
            Self::I8 => "int8",
            Self::U16 => "uint16",
            Self::I16 => "int16",
            Self::U32 => "uint32",
            Self::I32 => "int32",
            Self::F32 => "float32",
            Self::Bool => "bool",
            Self::String => "string",
            Self::Array => "array",
            Self::U64 => "uint64",
            Self::I64 => "int64",
            Self::F64 => "float64",
        }
    }

    /// Encoded size of a value of this type if it is fixed (not for strings and arrays).
    pub const fn fixed_size(self) -> Option<usize> {
        match self {
            Self::U8 | Self::I8 | Self::Bool => Some(1),
            Self::U16 | Self::I16 => Some(2),
            Self::U32 | Self::I32 | Self::F32 => Some(4),
            Self::U64 | Self::I64 | Self::F64 => Some(8),
            Self::String | Self::Array => None,
        }
    }

    /// The fewest bytes any value of this type takes: bounds how many can fit in what remains of a file.
    pub(crate) const fn min_encoded_size(self) -> usize {
        match self.fixed_size() {
            Some(n) => n,
            None => match self {
                Self::String => 8,
                _ => 12,
            },
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One metadata value. Strings and arrays borrow the file's bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    /// `uint8`
    U8(u8),
    /// `int8`
    I8(i8),
    /// `uint16`
    U16(u16),
    /// `int16`
    I16(i16),
    /// `uint32`
    U32(u32),
    /// `int32`
    I32(i32),
    /// `float32`
    F32(f32),
    /// `bool`
    Bool(bool),
    /// `string`
    String(&'a str),
    /// `array`
    Array(Array<'a>),
    /// `uint64`
    U64(u64),
    /// `int64`
    I64(i64),
    /// `float64`
    F64(f64),
}

impl<'a> Value<'a> {
    /// The value's type tag.
    pub const fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// Any integer value that is non-negative, widened to `u64`. Writers disagree on integer widths for the same key
    /// (`uint32` vs `int32` vs `uint64`), so readers should accept any of them.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer value, widened to `i64` when it fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// A `float32` or `float64` value as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    /// A `bool` value.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// A `string` value.
    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// An `array` value.
    pub fn as_array(&self) -> Option<Array<'a>> {
        match *self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Appends the value's GGUF encoding without its type tag (what follows the tag in a key-value pair or what an
    /// array element is).
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        match *self {
            Value::U8(v) => out.push(v),
            Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::Bool(v) => out.push(u8::from(v)),
            Value::String(s) => {
                out.extend_from_slice(&(s.len() as u64).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Value::Array(a) => {
                out.extend_from_slice(&a.elem.id().to_le_bytes());
                out.extend_from_slice(&(a.len as u64).to_le_bytes());
                out.extend_from_slice(a.body);
            }
            Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
}

/// A metadata array: element type, count, and the encoded elements, borrowed. It was fully validated when the file
/// was parsed (or built by [`ArrayBuf`]), so iterating it yields exactly [`Array::len`] values.
#[derive(Clone, Copy, PartialEq)]
pub struct Array<'a> {
    elem: ValueType,
    len: usize,
    body: &'a [u8],
}

impl<'a> Array<'a> {
    /// Wraps already-validated encoded elements.
    pub(crate) const fn new(elem: ValueType, len: usize, body: &'a [u8]) -> Self {
        Self { elem, len, body }
    }

    /// The element type.
    pub const fn elem_type(&self) -> ValueType {
        self.elem
    }

    /// Number of elements.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// True when the array has no elements.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements, decoded one at a time.
    pub fn iter(&self) -> ArrayIter<'a> {
        ArrayIter {
            elem: self.elem,
            remaining: self.len,
            cursor: Cursor::new(self.body),
        }
    }

    /// The elements as strings, if this is an array of strings.
    pub fn strs(&self) -> Option<impl Iterator<Item = &'a str> + use<'a>> {
        (self.elem == ValueType::String).then(|| self.iter().filter_map(|v| v.as_str()))
    }
}

impl fmt::Debug for Array<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Array<{}>[{}]", self.elem, self.len)
    }
}

impl<'a> IntoIterator for Array<'a> {
    type Item = Value<'a>;
    type IntoIter = ArrayIter<'a>;
    fn into_iter(self) -> ArrayIter<'a> {
        self.iter()
    }
}

/// Iterator over the elements of an [`Array`].
#[derive(Debug, Clone)]
pub struct ArrayIter<'a> {
    elem: ValueType,
    remaining: usize,
    cursor: Cursor<'a>,
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        self.remaining = self.remaining.checked_sub(1)?;
        // The body was validated when the array was made, so this cannot fail; if it somehow did, the iterator ends.
        self.cursor.value(self.elem, 1).ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

/// A Rust value that can be an element of a GGUF metadata array.
pub trait ArrayElem<'a> {
    /// The GGUF element type.
    const TYPE: ValueType;
    /// The element as a metadata value.
    fn into_value(self) -> Value<'a>;
}

macro_rules! array_elem {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl<'a> ArrayElem<'a> for $t {
            const TYPE: ValueType = ValueType::$variant;
            fn into_value(self) -> Value<'a> {
                Value::$variant(self)
            }
        }
    )*};
}

array_elem!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32, bool => Bool,
    &'a str => String, Array<'a> => Array, u64 => U64, i64 => I64, f64 => F64);

/// An owned, encoded metadata array, for writing files. Borrow it as an [`Array`] with [`ArrayBuf::as_array`].
#[derive(Clone, Debug, PartialEq)]
pub struct ArrayBuf {
    elem: ValueType,
    len: usize,
    body: Vec<u8>,
}

impl ArrayBuf {
    /// Encodes `items` as an array of `T`'s GGUF type.
    pub fn of<'a, T: ArrayElem<'a>>(items: impl IntoIterator<Item = T>) -> Self {
        let mut buf = ArrayBuf {
            elem: T::TYPE,
            len: 0,
            body: Vec::new(),
        };
        for item in items {
            item.into_value().encode_payload(&mut buf.body);
            buf.len += 1;
        }
        buf
    }

    /// The array, borrowed.
    pub fn as_array(&self) -> Array<'_> {
        Array::new(self.elem, self.len, &self.body)
    }
}
