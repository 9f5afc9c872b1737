//! Token element types and their Megatron dtype codes.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenDType {
    U8,
    I8,
    I16,
    I32,
    I64,
    U16,
}

impl TokenDType {
    /// Megatron-LM's `DType` code.
    pub fn code(self) -> u8 {
        match self {
            TokenDType::U8 => 1,
            TokenDType::I8 => 2,
            TokenDType::I16 => 3,
            TokenDType::I32 => 4,
            TokenDType::I64 => 5,
            TokenDType::U16 => 8,
        }
    }

    pub fn from_code(code: u8) -> Option<TokenDType> {
        Some(match code {
            1 => TokenDType::U8,
            2 => TokenDType::I8,
            3 => TokenDType::I16,
            4 => TokenDType::I32,
            5 => TokenDType::I64,
            8 => TokenDType::U16,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            TokenDType::U8 | TokenDType::I8 => 1,
            TokenDType::I16 | TokenDType::U16 => 2,
            TokenDType::I32 => 4,
            TokenDType::I64 => 8,
        }
    }

    /// numpy's name for it.
    pub fn name(self) -> &'static str {
        match self {
            TokenDType::U8 => "uint8",
            TokenDType::I8 => "int8",
            TokenDType::I16 => "int16",
            TokenDType::I32 => "int32",
            TokenDType::I64 => "int64",
            TokenDType::U16 => "uint16",
        }
    }

    /// uint16 when every token id fits, else int32 (what Megatron's preprocessing does).
    pub fn for_vocab(vocab_size: u64) -> TokenDType {
        if vocab_size <= 1 << 16 {
            TokenDType::U16
        } else {
            TokenDType::I32
        }
    }

    /// Smallest and largest token id the type holds.
    pub fn range(self) -> (i64, i64) {
        match self {
            TokenDType::U8 => (0, u8::MAX as i64),
            TokenDType::I8 => (i8::MIN as i64, i8::MAX as i64),
            TokenDType::I16 => (i16::MIN as i64, i16::MAX as i64),
            TokenDType::I32 => (i32::MIN as i64, i32::MAX as i64),
            TokenDType::I64 => (i64::MIN, i64::MAX),
            TokenDType::U16 => (0, u16::MAX as i64),
        }
    }

    /// Decode the little-endian token at byte offset `at` of `bytes`.
    #[inline]
    pub fn decode(self, bytes: &[u8], at: usize) -> i64 {
        match self {
            TokenDType::U8 => bytes[at] as i64,
            TokenDType::I8 => bytes[at] as i8 as i64,
            TokenDType::I16 => i16::from_le_bytes([bytes[at], bytes[at + 1]]) as i64,
            TokenDType::U16 => u16::from_le_bytes([bytes[at], bytes[at + 1]]) as i64,
            TokenDType::I32 => i32::from_le_bytes(le4(bytes, at)) as i64,
            TokenDType::I64 => i64::from_le_bytes(le8(bytes, at)),
        }
    }

    /// Append `token` (already range-checked) in little-endian.
    #[inline]
    pub fn encode(self, token: i64, out: &mut Vec<u8>) {
        match self {
            TokenDType::U8 | TokenDType::I8 => out.push(token as u8),
            TokenDType::I16 | TokenDType::U16 => {
                out.extend_from_slice(&(token as u16).to_le_bytes())
            }
            TokenDType::I32 => out.extend_from_slice(&(token as i32).to_le_bytes()),
            TokenDType::I64 => out.extend_from_slice(&token.to_le_bytes()),
        }
    }
}

#[inline]
pub(crate) fn le4(b: &[u8], at: usize) -> [u8; 4] {
    [b[at], b[at + 1], b[at + 2], b[at + 3]]
}

#[inline]
pub(crate) fn le8(b: &[u8], at: usize) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    a
}
