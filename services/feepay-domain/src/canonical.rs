//! The canonical XML writer of every signed document (receipts, tax documents): no
//! whitespace, canonical escaping, elements written in the order the layout gives, so the
//! bytes written are the bytes Canonical XML 1.0 would produce and what is signed. Kept by
//! hand for that reason (a general XML library would have to be canonicalised afterwards).

use crate::receipt::xml_escape;

pub(crate) struct Xml(pub(crate) String);

impl Xml {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Xml(String::with_capacity(n))
    }

    pub(crate) fn open(&mut self, tag: &str) {
        self.0.push('<');
        self.0.push_str(tag);
        self.0.push('>');
    }

    /// An opening tag with the `Id` a signature's `Reference` points at.
    pub(crate) fn open_with_id(&mut self, tag: &str, id: &str) {
        self.0.push('<');
        self.0.push_str(tag);
        self.0.push_str(" Id=\"");
        self.0.push_str(&xml_escape(id));
        self.0.push_str("\">");
    }

    pub(crate) fn close(&mut self, tag: &str) {
        self.0.push_str("</");
        self.0.push_str(tag);
        self.0.push('>');
    }

    pub(crate) fn el(&mut self, tag: &str, text: &str) {
        self.open(tag);
        self.0.push_str(&xml_escape(text));
        self.close(tag);
    }

    /// An element only when there is something to say.
    pub(crate) fn opt(&mut self, tag: &str, text: &str) {
        if !text.trim().is_empty() {
            self.el(tag, text);
        }
    }

    /// A `TTKhac/TTin` entry: field name, data type (`string`, `numeric`, `date`,
    /// `dateTime`) and value.
    pub(crate) fn info(&mut self, field: &str, kind: &str, value: &str) {
        self.open("TTin");
        self.el("TTruong", field);
        self.el("KDLieu", kind);
        self.el("DLieu", value);
        self.close("TTin");
    }
}
