//! The public lookup service's edge, tried from outside: spoofed `X-Forwarded-For` behind
//! one proxy does not escape the rate limit, an IPv6 subscriber is limited per /64, a client
//! that trickles its request head is cut off, every answer carries the security headers,
//! personal IDs are masked in the public view, and empty or oversized requests are refused.

use feepay_tests::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(90);

async fn status_from(base: &str, forwarded: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{base}/api/v1/keys"))
        .header("x-forwarded-for", forwarded)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Sends a request head declaring `length` bytes of body, sends no body, and returns the
/// status the server answers with.
async fn status_of_head(addr: &str, request_line: &str, content_type: &str, length: usize) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{request_line} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf)).await.expect("an answer").unwrap();
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&answer);
    line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status line: {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_one_proxy_spoofing_does_not_escape_the_limit_and_ipv6_is_limited_per_64() {
    let db = TestDb::new().await;
    let mut settings = lookup_settings(&db);
    settings.proxy_hops = 1;
    settings.rate_per_minute = 1;
    settings.burst = 2;
    let lookup = spawn_lookup(settings).await;
    let base = &lookup.base;
    // The proxy appends the address it saw; whatever the client wrote stays to the left.
    for spoof in ["1.1.1.1", "2.2.2.2"] {
        assert_eq!(status_from(base, &format!("{spoof}, 203.0.113.9")).await, 200);
    }
    assert_eq!(status_from(base, "3.3.3.3, 203.0.113.9").await, 429, "a third spoofed address is the same client");
    assert_eq!(status_from(base, "203.0.113.10").await, 200, "another client has its own budget");
    // One IPv6 subscriber, two addresses of its /64; then another /64.
    assert_eq!(status_from(base, "2001:db8:1:2::1").await, 200);
    assert_eq!(status_from(base, "2001:db8:1:2:aaaa::2").await, 200);
    assert_eq!(status_from(base, "2001:db8:1:2:ffff::3").await, 429, "the same /64");
    assert_eq!(status_from(base, "2001:db8:1:3::1").await, 200, "another /64");
    lookup.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_request_head_is_cut_off() {
    let db = TestDb::new().await;
    let mut settings = lookup_settings(&db);
    settings.header_timeout = Duration::from_secs(1);
    let lookup = spawn_lookup(settings).await;
    let addr = lookup.base.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // Never finishing the head: the server closes the connection (waited for, not timed).
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(WAIT, slow.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the server kept a trickling client for {WAIT:?}");
    // Meanwhile others are served, and shutdown does not wait on the stalled client.
    let _held = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert_eq!(reqwest::get(format!("{}/", lookup.base)).await.unwrap().status(), 200);
    tokio::time::timeout(WAIT, lookup.running.stop()).await.expect("shutdown despite an idle connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_security_headers_and_mask_personal_ids_and_bad_requests_are_refused() {
    let stack = TestStack::new().await;
    let db = &stack.db;
    let issuer = stack.issuer().await;
    let lookup = spawn_lookup(lookup_settings(db)).await;
    let code = stack.issue_one_receipt(WAIT).await;
    let base = &lookup.base;
    for path in ["/".to_string(), format!("/tra-cuu/{code}"), format!("/api/v1/receipts/{code}")] {
        let r = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["cache-control"], "no-store", "{path}");
    }
    // The public view masks the personal ID; the signed document keeps it, as the law wants.
    let j: serde_json::Value =
        reqwest::get(format!("{base}/api/v1/receipts/{code}")).await.unwrap().json().await.unwrap();
    assert_eq!(j["receipt"]["payer"]["personalId"], "027******234", "{j}");
    let page = reqwest::get(format!("{base}/tra-cuu/{code}")).await.unwrap().text().await.unwrap();
    assert!(page.contains("027******234") && !page.contains("027190001234"), "the page masks it");
    // The document holds the ID in full: the lookup code alone does not open it; the last
    // six characters of the payer's ID (or the dossier code) do.
    for missing in ["", "?xac_minh=", "?xac_minh=001235", "?xac_minh=1234"] {
        let r = reqwest::get(format!("{base}/api/v1/receipts/{code}/document{missing}")).await.unwrap();
        assert_eq!(r.status(), 403, "{missing}");
        let j: serde_json::Value = r.json().await.unwrap();
        assert_eq!(j["error"], "second_factor_required", "{j}");
        assert!(!j.to_string().contains("027190001234"));
    }
    let doc = reqwest::get(format!("{base}/api/v1/receipts/{code}/document?xac_minh=001234"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(doc.contains("<SDDCN>027190001234</SDDCN>"));
    // The page's QR handler is allowed by its hash under the CSP: a real browser runs it.
    let dom = chromium_dom(&format!("{base}/tra-cuu/{code}")).await;
    assert!(dom.contains("data-qr-width=\""), "the CSP lets the QR image's handler run: {dom}");

    let client = reqwest::Client::new();
    let empty = client
        .post(format!("{base}/api/v1/verify"))
        .header("content-type", "application/xml")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 400);
    // Oversized bodies are refused on their declared length, before a byte of them is read.
    // (Sent as a bare head: a client still writing a body the server refuses can see the
    // connection reset before it reads the answer, whatever the server does.)
    let addr = base.trim_start_matches("http://");
    let big = status_of_head(addr, "POST /api/v1/verify", "application/xml", 2 * 1024 * 1024).await;
    assert_eq!(big, 413, "a verification body is at most 1 MiB");
    let sneaky = status_of_head(addr, &format!("POST /api/v1/receipts/{code}"), "text/plain", 64 * 1024).await;
    assert!((400..500).contains(&sneaky), "no other route takes a body: {sneaky}");
    lookup.running.stop().await;
    issuer.stop().await;
}

/// CPU seconds this process has used so far (user and system, every thread).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    let ticks: u64 = rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// A 1 MiB document whose signature names the data part 2 600 times, each reference with
/// the right digest: without limits, every reference canonicalizes and hashes the whole data
/// part again (about 30 s of CPU for one request). It is refused before any digest, costs
/// milliseconds, and health answers throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_made_to_be_expensive_is_refused_cheaply() {
    use base64::Engine;
    use sha2::Digest;
    let db = TestDb::new().await;
    let lookup = spawn_lookup(lookup_settings(&db)).await;
    let data = format!("<DLBLai Id=\"d\"><TTChung><PBan>2.0.0</PBan></TTChung><x>{}</x></DLBLai>", "0".repeat(500_000));
    let wrapped = format!("<BLai>{data}</BLai>");
    let parsed = roxmltree::Document::parse(&wrapped).unwrap();
    let node = parsed.root_element().first_element_child().unwrap();
    let canonical =
        feepay_domain::receipt::c14n::canonicalize(node, feepay_domain::receipt::c14n::Method::Inclusive, None);
    let digest = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&canonical));
    let reference = format!(
        "<Reference URI=\"#d\"><DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><DigestValue>{digest}</DigestValue></Reference>"
    );
    let document = format!(
        "<BLai>{data}<DSCKS><DVThu><Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\"><SignedInfo>\
         <CanonicalizationMethod Algorithm=\"http://www.w3.org/TR/2001/REC-xml-c14n-20010315\"/>\
         <SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"/>{}</SignedInfo>\
         <SignatureValue>AAAA</SignatureValue></Signature></DVThu></DSCKS></BLai>",
        reference.repeat(2600)
    );
    assert!(document.len() < 1024 * 1024, "{} bytes: within the upload limit", document.len());

    let client = reqwest::Client::new();
    let before = cpu_seconds();
    let mut answers = Vec::new();
    for _ in 0..8 {
        let (client, base, document) = (client.clone(), lookup.base.clone(), document.clone());
        answers.push(tokio::spawn(async move {
            let r = client
                .post(format!("{base}/api/v1/verify"))
                .header("content-type", "application/xml")
                .body(document)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
        }));
    }
    // While they are in flight, the operations port answers.
    let health = client.get(format!("http://{}/healthz", lookup.running.http_addr)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let mut verdicts = 0;
    for a in answers {
        let (status, verdict) = a.await.unwrap();
        if status == 503 {
            // Both slots stayed taken for 2 s (a very busy machine): the documented answer.
            assert_eq!(verdict["error"], "busy", "{verdict}");
            continue;
        }
        verdicts += 1;
        assert_eq!(status, 200, "{verdict}");
        assert_eq!(verdict["authentic"], false);
        assert_eq!(verdict["signatureValid"], false);
        let why = verdict["signatureError"].as_str().unwrap_or_default();
        assert!(why.contains("references in SignedInfo"), "{why}");
    }
    assert!(verdicts > 0, "no document got a verdict");
    // CPU, not wall time: the same on a busy machine. Eight requests without the limits
    // cost minutes; with them, the parsing of 8 MiB of XML.
    let used = cpu_seconds() - before;
    assert!(used < 8.0, "eight hostile documents cost {used:.1} s of CPU");
    lookup.running.stop().await;
}

/// A connection from `source` (a loopback address) to the lookup.
async fn connect_from(source: &str, addr: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}

/// One `GET /` on an open connection, keeping it open; the status, or `None` when the
/// server closed the connection instead of answering.
async fn get_on(conn: &mut tokio::net::TcpStream) -> Option<u16> {
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(WAIT, conn.read(&mut byte)).await.expect("an answer or a close") {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let length: usize = text
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).await.ok()?;
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok())
}

/// The server closes `conn` (read to its end, waited for, not timed).
async fn closed_by_server(conn: &mut tokio::net::TcpStream) -> bool {
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, conn.read_to_end(&mut rest)).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_connections_are_closed_and_connections_are_capped_per_address_and_in_total() {
    let db = TestDb::new().await;
    let mut settings = lookup_settings(&db);
    settings.idle_timeout = Duration::from_secs(1);
    settings.header_timeout = Duration::from_secs(30);
    let lookup = spawn_lookup(settings).await;
    let addr = lookup.base.trim_start_matches("http://").to_string();
    // A TCP connection that never says anything, and a keep-alive one after its answer.
    let mut silent = connect_from("127.0.0.1", &addr).await;
    let mut kept = connect_from("127.0.0.1", &addr).await;
    assert_eq!(get_on(&mut kept).await, Some(200));
    assert!(closed_by_server(&mut silent).await, "a silent connection stays open");
    assert!(closed_by_server(&mut kept).await, "an idle keep-alive connection stays open");
    let m = lookup.running.metrics().await;
    assert!(metric_value(&m, "feepay_lookup_connections_closed_total", &[("reason", "idle")]) >= 2.0, "{m}");
    lookup.running.stop().await;

    // Caps: 3 per address, 5 in all (idle connections kept long enough to count).
    let mut settings = lookup_settings(&db);
    settings.max_connections_per_address = 3;
    settings.max_connections = 5;
    let lookup = spawn_lookup(settings).await;
    let addr = lookup.base.trim_start_matches("http://").to_string();
    let mut mine = Vec::new();
    for _ in 0..3 {
        let mut c = connect_from("127.0.0.1", &addr).await;
        assert_eq!(get_on(&mut c).await, Some(200));
        mine.push(c);
    }
    let mut fourth = connect_from("127.0.0.1", &addr).await;
    assert_eq!(get_on(&mut fourth).await, None, "a fourth connection from one address is served");
    let mut others = Vec::new();
    for _ in 0..2 {
        let mut c = connect_from("127.0.0.2", &addr).await;
        assert_eq!(get_on(&mut c).await, Some(200), "another address is not held to the first one's cap");
        others.push(c);
    }
    let mut sixth = connect_from("127.0.0.3", &addr).await;
    assert_eq!(get_on(&mut sixth).await, None, "a sixth connection in all is served");
    // The admitted ones go on being served, and a closed one frees its place.
    for c in mine.iter_mut() {
        assert_eq!(get_on(c).await, Some(200));
    }
    drop(mine.pop());
    let again = eventually(WAIT, "the freed place taken by a new connection", || async {
        let mut c = connect_from("127.0.0.1", &addr).await;
        get_on(&mut c).await.map(|s| (s, c))
    })
    .await;
    assert_eq!(again.0, 200);
    let m = lookup.running.metrics().await;
    assert!(metric_value(&m, "feepay_lookup_connections_closed_total", &[("reason", "per_address")]) >= 1.0, "{m}");
    assert!(metric_value(&m, "feepay_lookup_connections_closed_total", &[("reason", "total")]) >= 1.0, "{m}");
    lookup.running.stop().await;
}
