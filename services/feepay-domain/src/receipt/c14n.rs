//! Canonical XML 1.0 (W3C, 2001) and Exclusive XML Canonicalization 1.0 (2002), without
//! comments, of an element subtree of a parsed document, optionally leaving out one
//! descendant element (the enveloped-signature transform).
//!
//! The issuer writes its documents already in canonical form, so signing needs none of
//! this; verification does: a document a citizen uploads may have been re-indented or
//! re-encoded by some tool outside its signed parts, and a verifier must digest what C14N
//! says, not the bytes it received. The receipts' tests check that this canonicalizer and
//! the issuer's writer agree byte for byte.
//!
//! What the algorithms specify and this implements: namespace declarations rendered on the
//! apex from the whole in-scope set (inclusive) or only where visibly used (exclusive), and
//! on descendants only where they change; attributes sorted by namespace URI then local
//! name after the namespace declarations (sorted by prefix, default first); empty elements
//! as start and end tags; text escaping `&` `<` `>` and CR; attribute escaping `&` `<`
//! `"` TAB LF CR; processing instructions kept, comments dropped; no XML declaration.
//! Inclusive C14N also inherits `xml:` attributes from ancestors onto the apex.

use roxmltree::{Node, NodeType};
use std::collections::BTreeMap;

const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Which canonicalization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `http://www.w3.org/TR/2001/REC-xml-c14n-20010315`
    Inclusive,
    /// `http://www.w3.org/2001/10/xml-exc-c14n#`
    Exclusive,
}

impl Method {
    pub const INCLUSIVE_URI: &'static str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
    pub const EXCLUSIVE_URI: &'static str = "http://www.w3.org/2001/10/xml-exc-c14n#";

    /// The method of an algorithm URI (comments variants are refused: comments are never
    /// signed here).
    pub fn from_uri(uri: &str) -> Option<Method> {
        match uri {
            Self::INCLUSIVE_URI => Some(Method::Inclusive),
            Self::EXCLUSIVE_URI => Some(Method::Exclusive),
            _ => None,
        }
    }
}

/// Canonical form of `apex` and its descendants, leaving out `excluded` (and its subtree).
pub fn canonicalize(apex: Node<'_, '_>, method: Method, excluded: Option<Node<'_, '_>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    // Namespace declarations rendered by the nearest output ancestor: prefix -> uri
    // ("" is the default namespace).
    let rendered: BTreeMap<String, String> = BTreeMap::new();
    write_element(&mut out, apex, method, excluded, &rendered, true);
    out
}

/// Namespaces in scope at `node`: prefix -> uri ("" for the default, omitted when empty).
fn in_scope(node: Node<'_, '_>) -> BTreeMap<String, String> {
    node.namespaces()
        .filter(|ns| ns.uri() != XML_NS)
        .map(|ns| (ns.name().unwrap_or("").to_string(), ns.uri().to_string()))
        .collect()
}

/// Prefixes an element visibly uses: its own and its attributes' (exclusive C14N).
fn visibly_used(node: Node<'_, '_>) -> Vec<String> {
    let mut used = Vec::new();
    let ns = node.tag_name().namespace().unwrap_or("");
    let own = if ns.is_empty() { Some(String::new()) } else { node.lookup_prefix(ns).map(str::to_string) };
    used.push(own.unwrap_or_default());
    for a in node.attributes() {
        if let Some(uri) = a.namespace() {
            if uri != XML_NS {
                if let Some(p) = node.lookup_prefix(uri) {
                    used.push(p.to_string());
                }
            }
        }
    }
    used
}

fn qualified_name(node: Node<'_, '_>) -> String {
    let local = node.tag_name().name();
    match node.tag_name().namespace() {
        Some(uri) if !uri.is_empty() => match node.lookup_prefix(uri) {
            Some(p) if !p.is_empty() => format!("{p}:{local}"),
            _ => local.to_string(),
        },
        _ => local.to_string(),
    }
}

fn write_element(
    out: &mut Vec<u8>,
    node: Node<'_, '_>,
    method: Method,
    excluded: Option<Node<'_, '_>>,
    rendered: &BTreeMap<String, String>,
    apex: bool,
) {
    let name = qualified_name(node);
    out.push(b'<');
    out.extend_from_slice(name.as_bytes());

    // Namespace declarations.
    let scope = in_scope(node);
    let mut now_rendered = rendered.clone();
    let mut decls: Vec<(String, String)> = Vec::new();
    match method {
        Method::Inclusive => {
            for (prefix, uri) in &scope {
                if rendered.get(prefix) != Some(uri) {
                    decls.push((prefix.clone(), uri.clone()));
                }
            }
            // A default namespace undeclared here but rendered above.
            if !scope.contains_key("") && rendered.get("").is_some_and(|u| !u.is_empty()) {
                decls.push((String::new(), String::new()));
            }
        }
        Method::Exclusive => {
            for prefix in visibly_used(node) {
                let uri = scope.get(&prefix).cloned().unwrap_or_default();
                let shown = rendered.get(&prefix).cloned().unwrap_or_default();
                if uri != shown && !decls.iter().any(|(p, _)| *p == prefix) {
                    decls.push((prefix, uri));
                }
            }
        }
    }
    decls.sort_by(|a, b| a.0.cmp(&b.0));
    for (prefix, uri) in decls {
        if prefix.is_empty() {
            out.extend_from_slice(b" xmlns=\"");
        } else {
            out.extend_from_slice(b" xmlns:");
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(b"=\"");
        }
        escape_attr(out, &uri);
        out.push(b'"');
        now_rendered.insert(prefix, uri);
    }

    // Attributes, sorted by (namespace URI, local name); inclusive C14N brings the apex's
    // inherited xml:* attributes along.
    let mut attrs: Vec<(String, String, String)> = node
        .attributes()
        .map(|a| {
            let uri = a.namespace().unwrap_or("").to_string();
            let qname = match a.namespace() {
                Some(XML_NS) => format!("xml:{}", a.name()),
                Some(u) => match node.lookup_prefix(u) {
                    Some(p) if !p.is_empty() => format!("{p}:{}", a.name()),
                    _ => a.name().to_string(),
                },
                None => a.name().to_string(),
            };
            (uri, a.name().to_string(), format!("{qname}=\"{}\"", attr_text(a.value())))
        })
        .collect();
    if apex && method == Method::Inclusive {
        let mut ancestor = node.parent_element();
        while let Some(a) = ancestor {
            for at in a.attributes().filter(|at| at.namespace() == Some(XML_NS)) {
                if !attrs.iter().any(|(u, l, _)| u == XML_NS && l == at.name()) {
                    attrs.push((
                        XML_NS.to_string(),
                        at.name().to_string(),
                        format!("xml:{}=\"{}\"", at.name(), attr_text(at.value())),
                    ));
                }
            }
            ancestor = a.parent_element();
        }
    }
    attrs.sort_by(|a, b| (a.0.as_str(), a.1.as_str()).cmp(&(b.0.as_str(), b.1.as_str())));
    for (_, _, text) in attrs {
        out.push(b' ');
        out.extend_from_slice(text.as_bytes());
    }
    out.push(b'>');

    for child in node.children() {
        if excluded.is_some_and(|e| e == child) {
            continue;
        }
        match child.node_type() {
            NodeType::Element => write_element(out, child, method, excluded, &now_rendered, false),
            NodeType::Text => escape_text(out, child.text().unwrap_or("")),
            NodeType::PI => {
                if let Some(pi) = child.pi() {
                    out.extend_from_slice(b"<?");
                    out.extend_from_slice(pi.target.as_bytes());
                    if let Some(v) = pi.value {
                        out.push(b' ');
                        out.extend_from_slice(v.as_bytes());
                    }
                    out.extend_from_slice(b"?>");
                }
            }
            NodeType::Comment | NodeType::Root => {}
        }
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(name.as_bytes());
    out.push(b'>');
}

fn escape_text(out: &mut Vec<u8>, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.extend_from_slice(b"&amp;"),
            '<' => out.extend_from_slice(b"&lt;"),
            '>' => out.extend_from_slice(b"&gt;"),
            '\r' => out.extend_from_slice(b"&#xD;"),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

fn attr_text(s: &str) -> String {
    let mut out = Vec::new();
    escape_attr(&mut out, s);
    String::from_utf8(out).unwrap_or_default()
}

fn escape_attr(out: &mut Vec<u8>, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.extend_from_slice(b"&amp;"),
            '<' => out.extend_from_slice(b"&lt;"),
            '"' => out.extend_from_slice(b"&quot;"),
            '\t' => out.extend_from_slice(b"&#x9;"),
            '\n' => out.extend_from_slice(b"&#xA;"),
            '\r' => out.extend_from_slice(b"&#xD;"),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c14n(doc: &str, id: &str, method: Method) -> String {
        let d = roxmltree::Document::parse(doc).unwrap();
        let apex = d.descendants().find(|n| n.attribute("Id") == Some(id)).unwrap();
        String::from_utf8(canonicalize(apex, method, None)).unwrap()
    }

    #[test]
    fn the_apex_carries_the_namespaces_in_scope() {
        let doc = r#"<?xml version="1.0"?>
<r xmlns:a="urn:a"><Signature xmlns="urn:ds"  Id="s"><SignedInfo Id="i" b="2"  a="1" ><x/></SignedInfo></Signature></r>"#;
        assert_eq!(
            c14n(doc, "i", Method::Inclusive),
            r#"<SignedInfo xmlns="urn:ds" xmlns:a="urn:a" Id="i" a="1" b="2"><x></x></SignedInfo>"#
        );
        assert_eq!(
            c14n(doc, "i", Method::Exclusive),
            r#"<SignedInfo xmlns="urn:ds" Id="i" a="1" b="2"><x></x></SignedInfo>"#
        );
    }

    #[test]
    fn text_and_attributes_are_escaped_as_the_standard_says() {
        let doc = "<r><d Id=\"d\" t=\"a&#9;b&#10;&quot;&lt;&gt;\">Tôi &amp; bạn &lt;&gt; \"'&#13;</d></r>";
        assert_eq!(
            c14n(doc, "d", Method::Inclusive),
            "<d Id=\"d\" t=\"a&#x9;b&#xA;&quot;&lt;>\">Tôi &amp; bạn &lt;&gt; \"'&#xD;</d>"
        );
    }

    #[test]
    fn comments_go_and_the_excluded_subtree_goes() {
        let doc = r#"<r><d Id="d"><!-- note --><a>1</a><S xmlns="urn:ds"><v>x</v></S><?pi data?></d></r>"#;
        let d = roxmltree::Document::parse(doc).unwrap();
        let apex = d.descendants().find(|n| n.attribute("Id") == Some("d")).unwrap();
        let sig = d.descendants().find(|n| n.tag_name().name() == "S").unwrap();
        assert_eq!(
            String::from_utf8(canonicalize(apex, Method::Inclusive, Some(sig))).unwrap(),
            "<d Id=\"d\"><a>1</a><?pi data?></d>"
        );
    }
}
