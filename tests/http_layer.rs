//! The HTTP layer as clients and operators meet it: the base URL, compression, request ids,
//! metrics, shutdown.

mod common;

use common::{expect_status, StoreKind, TestServer};

async fn sqlite() -> TestServer {
    TestServer::start(StoreKind::Sqlite).await.unwrap()
}

const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8";

/// The server's root (`http://host:port`), from its FHIR base.
fn root(server: &TestServer) -> String {
    server.base.trim_end_matches("/fhir").to_owned()
}

// ---------------------------------------------------------------------------------------------
// the base URL
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_base_url_answers_a_fhir_client_with_the_capability_statement() {
    let server = sqlite().await;
    let root = root(&server);
    for url in [
        server.base.clone(),
        format!("{}/", server.base),
        format!("{root}/"),
    ] {
        for accept in ["application/fhir+json", "application/json", "*/*"] {
            let reply = server
                .client
                .send("GET", &url, &[("Accept", accept)], None)
                .await
                .unwrap();
            let body = expect_status(&reply, 200);
            assert_eq!(
                body["resourceType"], "CapabilityStatement",
                "{url} {accept}"
            );
        }
        // `_format` wins over a browser's Accept.
        let reply = server
            .client
            .send(
                "GET",
                &format!("{url}?_format=json"),
                &[("Accept", BROWSER_ACCEPT)],
                None,
            )
            .await
            .unwrap();
        let body = expect_status(&reply, 200);
        assert_eq!(body["resourceType"], "CapabilityStatement", "{url}");
    }
}

#[tokio::test]
async fn the_base_url_shows_a_browser_a_page_linking_to_metadata_and_the_docs() {
    let server = sqlite().await;
    let root = root(&server);
    for url in [
        server.base.clone(),
        format!("{}/", server.base),
        format!("{root}/"),
    ] {
        let reply = server
            .client
            .send("GET", &url, &[("Accept", BROWSER_ACCEPT)], None)
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{url}");
        assert!(
            reply
                .header("content-type")
                .unwrap()
                .starts_with("text/html"),
            "{url}"
        );
        let page = String::from_utf8(reply.body.to_vec()).unwrap();
        assert!(page.contains("FHIR R4"), "{page}");
        let metadata = format!("{}/metadata", server.base);
        assert!(page.contains(&format!("href=\"{metadata}\"")), "{page}");
        // Every link to a document works.
        let docs: Vec<&str> = page
            .split("href=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .filter(|href| href.starts_with("/docs/"))
            .collect();
        assert!(docs.contains(&"/docs/rest.md"), "{page}");
        for href in docs {
            let doc = server.client.get(&format!("{root}{href}")).await.unwrap();
            assert_eq!(doc.status, 200, "{href}");
            assert!(!doc.body.is_empty(), "{href}");
        }
    }
    let missing = server
        .client
        .get(&format!("{root}/docs/nothing.md"))
        .await
        .unwrap();
    expect_status(&missing, 404);
}

#[tokio::test]
async fn a_wrong_method_on_the_base_names_the_base_in_its_405() {
    let server = sqlite().await;
    let reply = server.client.send("DELETE", "", &[], None).await.unwrap();
    let outcome = expect_status(&reply, 405);
    let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(
        diagnostics.contains(&format!("on {}", server.base)),
        "{diagnostics}"
    );
    assert_eq!(reply.header("allow"), Some("GET, POST"));
    let reply = server
        .client
        .send("DELETE", "metadata", &[], None)
        .await
        .unwrap();
    let outcome = expect_status(&reply, 405);
    let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(
        diagnostics.contains(&format!("on {}/metadata", server.base)),
        "{diagnostics}"
    );
    // `/` is no FHIR base: nothing but reading it.
    let reply = server
        .client
        .send(
            "POST",
            &format!("{}/", root(&server)),
            &[],
            Some(b"{}".to_vec()),
        )
        .await
        .unwrap();
    expect_status(&reply, 405);
}

// ---------------------------------------------------------------------------------------------
// compression
// ---------------------------------------------------------------------------------------------

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    brotli::Decompressor::new(bytes, 4096)
        .read_to_end(&mut out)
        .expect("a br body");
    out
}

#[tokio::test]
async fn responses_are_compressed_as_accept_encoding_asks() {
    let server = sqlite().await;
    let plain = server.client.get("metadata").await.unwrap();
    assert_eq!(plain.header("content-encoding"), None);
    let expected: serde_json::Value = serde_json::from_slice(&plain.body).unwrap();
    for (encoding, decode) in [("gzip", gunzip as fn(&[u8]) -> Vec<u8>), ("br", unbrotli)] {
        let reply = server
            .client
            .send("GET", "metadata", &[("Accept-Encoding", encoding)], None)
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-encoding"), Some(encoding));
        assert!(
            reply.body.len() * 5 < plain.body.len(),
            "{encoding}: {} of {} bytes",
            reply.body.len(),
            plain.body.len()
        );
        let body: serde_json::Value = serde_json::from_slice(&decode(&reply.body)).unwrap();
        // Only the date could differ between the two requests.
        assert_eq!(body["rest"], expected["rest"], "{encoding}");
    }
    // Errors and searches too, not only the CapabilityStatement.
    let reply = server
        .client
        .send(
            "GET",
            "Patient?_count=1000",
            &[("Accept-Encoding", "gzip")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-encoding"), Some("gzip"));
    let bundle: serde_json::Value = serde_json::from_slice(&gunzip(&reply.body)).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    // An encoding the server does not have is not used.
    let reply = server
        .client
        .send("GET", "metadata", &[("Accept-Encoding", "compress")], None)
        .await
        .unwrap();
    assert_eq!(reply.header("content-encoding"), None);
    assert_eq!(reply.status, 200);
}

// ---------------------------------------------------------------------------------------------
// request ids and logs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_sane_client_request_id_is_kept_and_answered() {
    let server = sqlite().await;
    let id = "trace-4f1c.77:a_b";
    let reply = server
        .client
        .send("GET", "Patient", &[("X-Request-Id", id)], None)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-request-id"), Some(id));
    // The request's AuditEvent carries it (written behind the request).
    let mut found = false;
    for _ in 0..100 {
        let bundle = expect_status(
            &server.client.get("AuditEvent?_count=1000").await.unwrap(),
            200,
        );
        found = bundle["entry"].as_array().into_iter().flatten().any(|e| {
            e["resource"]["entity"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|x| {
                    x["detail"][0]["valueString"] == id && x["detail"][0]["type"] == "X-Request-Id"
                })
        });
        if found {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(found, "no AuditEvent names request {id}");
}

#[tokio::test]
async fn a_missing_or_unsafe_request_id_is_replaced_by_a_new_one() {
    let server = sqlite().await;
    let mut seen = Vec::new();
    for headers in [
        vec![],
        vec![("X-Request-Id", "two words")],
        vec![("X-Request-Id", "<script>")],
    ] {
        let reply = server
            .client
            .send("GET", "metadata", &headers, None)
            .await
            .unwrap();
        let id = reply
            .header("x-request-id")
            .expect("every response has an id")
            .to_owned();
        assert_eq!(id.len(), 36, "a UUID: {id}");
        assert!(!seen.contains(&id), "ids are new each time");
        seen.push(id);
    }
    // Errors and paths outside the FHIR base too.
    let health = format!("{}/health", root(&server));
    let reply = server.client.get(&health).await.unwrap();
    assert!(reply.header("x-request-id").is_some());
}

#[tokio::test]
async fn json_logs_carry_the_request_id_in_every_line_of_a_request() {
    use std::process::{Command, Stdio};
    let dir = common::TempDir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.0.join("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_signaal"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--no-scoring",
        ])
        .args([
            "--database",
            &format!("sqlite://{}", dir.0.join("db").display()),
        ])
        .env("SIGNAAL_LOG_FORMAT", "json")
        .env("SIGNAAL_LOG", "info")
        // The access log line is at info level only when asked for.
        .env("SIGNAAL_ACCESS_LOG", "true")
        .env_remove("SIGNAAL_BASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let client = signaal::client::Client::new(&format!("http://127.0.0.1:{port}/fhir"));
    let mut ready = false;
    for _ in 0..600 {
        if client.get("metadata").await.is_ok_and(|r| r.status == 200) {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let reply = if ready {
        client
            .send(
                "GET",
                "Patient?name=x",
                &[("X-Request-Id", "log-check-1")],
                None,
            )
            .await
            .ok()
    } else {
        None
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(ready, "the server did not start:\n{text}");
    assert_eq!(reply.map(|r| r.status), Some(200));
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let ours: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["span"]["id"] == "log-check-1")
        .collect();
    assert!(
        ours.iter()
            .any(|l| l["fields"]["message"] == "request" && l["fields"]["status"] == 200),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// every error an OperationOutcome, also those the HTTP layer answers itself
// ---------------------------------------------------------------------------------------------

/// The server's `host:port`.
fn address(server: &TestServer) -> String {
    root(server).trim_start_matches("http://").to_owned()
}

/// A response read off a raw connection: status, lower-cased head, body.
struct RawReply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Sends `request` as it is over a new connection and reads the answer until the server
/// closes the connection.
async fn raw(server: &TestServer, request: &[u8]) -> RawReply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address(server))
        .await
        .unwrap();
    // The server may answer (and close) before it has read all of an oversized request.
    let _ = stream.write_all(request).await;
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut bytes),
    )
    .await
    .expect("the server closes the connection after its answer");
    if let Err(e) = read {
        // A reset after the answer was read is fine.
        assert!(!bytes.is_empty(), "no answer: {e}");
    }
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&bytes)));
    let head = String::from_utf8_lossy(&bytes[..split]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    RawReply {
        status,
        head,
        body: bytes[split + 4..].to_vec(),
    }
}

/// Asserts a raw reply is `status` with an OperationOutcome of issue code `code`.
fn assert_outcome(reply: &RawReply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.head);
    assert!(
        reply.head.contains("content-type: application/fhir+json"),
        "{}",
        reply.head
    );
    let body: serde_json::Value = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&reply.body)));
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert_eq!(body["issue"][0]["code"], code, "{body}");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn a_malformed_request_line_gets_a_400_operation_outcome() {
    let server = sqlite().await;
    let reply = raw(
        &server,
        b"GET /fhir/metadata HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_outcome(&reply, 400, "structure");
}

#[tokio::test]
async fn a_malformed_header_gets_a_400_operation_outcome() {
    let server = sqlite().await;
    let reply = raw(
        &server,
        b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    )
    .await;
    assert_outcome(&reply, 400, "structure");
}

#[tokio::test]
async fn a_url_too_long_to_read_gets_a_414_operation_outcome() {
    let server = sqlite().await;
    let request = format!(
        "GET /fhir/Patient?name={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(70_000)
    );
    let reply = raw(&server, request.as_bytes()).await;
    assert_outcome(&reply, 414, "too-long");
}

#[tokio::test]
async fn too_many_headers_get_a_431_operation_outcome() {
    let server = sqlite().await;
    let mut request = String::from("GET /fhir/metadata HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        request.push_str(&format!("X-Filler-{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    let reply = raw(&server, request.as_bytes()).await;
    assert_outcome(&reply, 431, "too-long");
}

#[tokio::test]
async fn a_wrong_method_on_the_server_s_own_endpoints_gets_a_405_operation_outcome() {
    let server = sqlite().await;
    for (method, path, allow) in [
        ("POST", "/fhir/.well-known/smart-configuration", "get, head"),
        ("DELETE", "/health", "get, head"),
        ("GET", "/auth/token", "post"),
        ("PUT", "/docs/search.md", "get, head"),
    ] {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let reply = raw(&server, request.as_bytes()).await;
        assert_outcome(&reply, 405, "not-supported");
        assert!(
            reply.head.contains(&format!("allow: {allow}")),
            "{method} {path}: {}",
            reply.head
        );
    }
}

#[tokio::test]
async fn an_unreadable_document_name_gets_a_400_operation_outcome() {
    let server = sqlite().await;
    let reply = raw(
        &server,
        b"GET /docs/%FF%FE HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_outcome(&reply, 400, "invalid");
}
