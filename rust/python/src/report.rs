//! Reports (select's, build's, inspect's) cross into Python as the dicts, lists and
//! numbers their serde form describes, built directly from the Rust struct: the same
//! values, keys and key order as their JSON files (non-finite floats become `None`, as in
//! JSON), without a JSON string in between. Typed by the TypedDicts of
//! `miniplm/reports.py`.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use pyo3::IntoPyObjectExt;
use serde::ser::{self, Serialize};

/// The Python value of a report.
pub fn to_python<T: Serialize>(py: Python<'_>, value: &T) -> PyResult<Py<PyAny>> {
    value.serialize(ToPy { py }).map_err(|e| e.0)
}

pub struct PyErrBox(PyErr);

impl std::fmt::Debug for PyErrBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for PyErrBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for PyErrBox {}

impl ser::Error for PyErrBox {
    fn custom<M: std::fmt::Display>(msg: M) -> Self {
        PyErrBox(crate::errors::to_py(miniplm_core::Error::internal(
            format!("cannot convert a report: {msg}"),
        )))
    }
}

impl From<PyErr> for PyErrBox {
    fn from(e: PyErr) -> Self {
        PyErrBox(e)
    }
}

type Out = Result<Py<PyAny>, PyErrBox>;

#[derive(Clone, Copy)]
struct ToPy<'py> {
    py: Python<'py>,
}

impl<'py> ToPy<'py> {
    fn obj<T: IntoPyObject<'py>>(self, v: T) -> Out {
        Ok(v.into_py_any(self.py)?)
    }
}

impl<'py> ser::Serializer for ToPy<'py> {
    type Ok = Py<PyAny>;
    type Error = PyErrBox;
    type SerializeSeq = Seq<'py>;
    type SerializeTuple = Seq<'py>;
    type SerializeTupleStruct = Seq<'py>;
    type SerializeTupleVariant = Variant<Seq<'py>>;
    type SerializeMap = Map<'py>;
    type SerializeStruct = Map<'py>;
    type SerializeStructVariant = Variant<Map<'py>>;

    fn serialize_bool(self, v: bool) -> Out {
        self.obj(v)
    }
    fn serialize_i8(self, v: i8) -> Out {
        self.obj(v)
    }
    fn serialize_i16(self, v: i16) -> Out {
        self.obj(v)
    }
    fn serialize_i32(self, v: i32) -> Out {
        self.obj(v)
    }
    fn serialize_i64(self, v: i64) -> Out {
        self.obj(v)
    }
    fn serialize_u8(self, v: u8) -> Out {
        self.obj(v)
    }
    fn serialize_u16(self, v: u16) -> Out {
        self.obj(v)
    }
    fn serialize_u32(self, v: u32) -> Out {
        self.obj(v)
    }
    fn serialize_u64(self, v: u64) -> Out {
        self.obj(v)
    }
    fn serialize_f32(self, v: f32) -> Out {
        self.serialize_f64(f64::from(v))
    }
    /// JSON has no NaN or infinity: serde_json writes `null`, and so do we.
    fn serialize_f64(self, v: f64) -> Out {
        if v.is_finite() {
            self.obj(v)
        } else {
            Ok(self.py.None())
        }
    }
    fn serialize_char(self, v: char) -> Out {
        self.obj(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Out {
        self.obj(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Out {
        // As serde_json: a list of numbers (a Vec<u8> would become `bytes`).
        self.obj(v.iter().map(|&b| u32::from(b)).collect::<Vec<_>>())
    }
    fn serialize_none(self) -> Out {
        Ok(self.py.None())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Out {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Out {
        Ok(self.py.None())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Out {
        Ok(self.py.None())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Out {
        self.obj(variant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, v: &T) -> Out {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Out {
        let d = PyDict::new(self.py);
        d.set_item(variant, v.serialize(self)?)?;
        Ok(d.into_any().unbind())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Seq<'py>, PyErrBox> {
        Ok(Seq {
            to: self,
            list: PyList::empty(self.py),
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq<'py>, PyErrBox> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq<'py>, PyErrBox> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Variant<Seq<'py>>, PyErrBox> {
        Ok(Variant {
            variant,
            inner: self.serialize_seq(Some(len))?,
        })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Map<'py>, PyErrBox> {
        Ok(Map {
            to: self,
            dict: PyDict::new(self.py),
            key: None,
        })
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Map<'py>, PyErrBox> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Variant<Map<'py>>, PyErrBox> {
        Ok(Variant {
            variant,
            inner: self.serialize_map(Some(len))?,
        })
    }
}

pub struct Seq<'py> {
    to: ToPy<'py>,
    list: Bound<'py, PyList>,
}

impl Seq<'_> {
    fn push<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), PyErrBox> {
        Ok(self.list.append(v.serialize(self.to)?)?)
    }
    fn done(self) -> Out {
        Ok(self.list.into_any().unbind())
    }
}

impl ser::SerializeSeq for Seq<'_> {
    type Ok = Py<PyAny>;
    type Error = PyErrBox;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), PyErrBox> {
        self.push(v)
    }
    fn end(self) -> Out {
        self.done()
    }
}

impl ser::SerializeTuple for Seq<'_> {
    type Ok = Py<PyAny>;
    type Error = PyErrBox;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), PyErrBox> {
        self.push(v)
    }
    fn end(self) -> Out {
        self.done()
    }
}

impl ser::SerializeTupleStruct for Seq<'_> {
    type Ok = Py<PyAny>;
    type Error = PyErrBox;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), PyErrBox> {
        self.push(v)
    }
    fn end(self) -> Out {
        self.done()
    }
}

pub struct Map<'py> {
    to: ToPy<'py>,
    dict: Bound<'py, PyDict>,
    key: Option<Py<PyAny>>,
}

impl Map<'_> {
    fn field<T: ?Sized + Serialize>(&mut self, k: &'static str, v: &T) -> Result<(), PyErrBox> {
        Ok(self.dict.set_item(k, v.serialize(self.to)?)?)
    }
    fn done(self) -> Out {
        Ok(self.dict.into_any().unbind())
    }
}

impl ser::SerializeMap for Map<'_> {
    type Ok = Py<PyAny>;
    type Error = PyErrBox;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, k: &T) -> Result<(), PyErrBox> {
        self.key = Some(k.serialize(self.to)?);
        Ok(())
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), PyErrBox> {
        let k = self
            .key
            .take()
            .ok_or_else(|| <PyErrBox as ser::Error>::custom("map value without a key"))?;
        Ok(self.dict.set_item(k, v.serialize(self.to)?)?)
    }
    fn end(self) -> Out {
        self.done()
    }
}

impl ser::SerializeStruct for Map<'_> {
    type Ok = Py<PyAny>;
    type Error = PyErrBox;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        k: &'static str,
        v: &T,
    ) -> Result<(), PyErrBox> {
        self.field(k, v)
    }
    fn end(self) -> Out {
        self.done()
    }
}

/// An enum variant with fields: `{variant: fields}`, as serde_json writes it.
pub struct Variant<S> {
    variant: &'static str,
    inner: S,
}

impl<S> Variant<S> {
    fn wrap(py: Python<'_>, variant: &'static str, inner: Py<PyAny>) -> Out {
        let d = PyDict::new(py);
        d.set_item(variant, inner)?;
        Ok(d.into_any().unbind())
    }
}

impl<'py> ser::SerializeTupleVariant for Variant<Seq<'py>> {
    type Ok = Py<PyAny>;
    type Error = PyErrBox;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), PyErrBox> {
        self.inner.push(v)
    }
    fn end(self) -> Out {
        let py = self.inner.to.py;
        Self::wrap(py, self.variant, self.inner.done()?)
    }
}

impl<'py> ser::SerializeStructVariant for Variant<Map<'py>> {
    type Ok = Py<PyAny>;
    type Error = PyErrBox;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        k: &'static str,
        v: &T,
    ) -> Result<(), PyErrBox> {
        self.inner.field(k, v)
    }
    fn end(self) -> Out {
        let py = self.inner.to.py;
        Self::wrap(py, self.variant, self.inner.done()?)
    }
}
