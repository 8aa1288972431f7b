//! A webhook receiver on loopback for the tests, and the Standard Webhooks
//! signature check a receiver makes (written independently of the service's
//! own signing code). Shared by tests/api and tests/reliability.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
}

/// A webhook receiver on loopback. `/flaky` answers 500 to its first three
/// requests and 204 after; `/sometimes` answers 500 to its 1st, 4th, 7th…
/// request; `/slow` waits 3 s; `/down` always 503; any other path 204.
pub struct Receiver {
    base: String,
    got: Arc<Mutex<Vec<Received>>>,
    handle: actix_web::dev::ServerHandle,
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    got: web::Data<Arc<Mutex<Vec<Received>>>>,
) -> HttpResponse {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let path = req.path().to_string();
    let seen = {
        let mut g = got.lock().unwrap();
        g.push(Received {
            path: path.clone(),
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            body: String::from_utf8_lossy(&body).to_string(),
        });
        g.iter().filter(|r| r.path == path).count()
    };
    match path.as_str() {
        "/flaky" if seen <= 3 => HttpResponse::InternalServerError().body("nope, not yet"),
        "/sometimes" if seen % 3 == 1 => HttpResponse::InternalServerError().body("hiccup"),
        "/slow" => {
            actix_web::rt::time::sleep(Duration::from_secs(3)).await;
            HttpResponse::NoContent().finish()
        }
        "/down" => HttpResponse::ServiceUnavailable().body("down for maintenance"),
        _ => HttpResponse::NoContent().finish(),
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let data = web::Data::new(got.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .expect("bind the receiver");
        let base = format!("http://{}", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Receiver { base, got, handle }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn at(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `path` has had `n` requests, and answers them.
    pub async fn wait_for(&self, path: &str, n: usize) -> Vec<Received> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.at(path);
            if got.len() >= n {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{path} had {} requests, not {n}, within 30 s: {got:?}",
                got.len()
            );
            actix_web::rt::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// The Standard Webhooks check a receiver makes, written independently of
/// the service's own signing code.
pub fn signature_valid(secret: &str, r: &Received) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", r.id, r.timestamp, r.body).as_bytes());
    let expected = format!("v1,{}", b64.encode(mac.finalize().into_bytes()));
    r.signature.split(' ').any(|s| s == expected)
}
