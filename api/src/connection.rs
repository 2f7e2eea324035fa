//! Whether the client of a request is still there, so that a long poll ends
//! when its client goes away instead of holding a socket in CLOSE_WAIT (and
//! its memory) until the wait runs out. The HTTP server does not say; the
//! socket does: once the client has closed it, a peek reads end of stream.

use std::any::Any;
use std::future::pending;
use std::os::fd::AsFd;

use actix_web::dev::Extensions;
use actix_web::HttpRequest;

/// A second handle on a connection's socket, made when it is accepted.
struct Socket(std::net::TcpStream);

/// For `HttpServer::on_connect`: keeps a handle on each TCP connection's
/// socket in the connection's data.
pub(crate) fn remember(connection: &dyn Any, data: &mut Extensions) {
    let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() else {
        return;
    };
    match stream.as_fd().try_clone_to_owned() {
        Ok(fd) => {
            data.insert(Socket(fd.into()));
        }
        Err(e) => tracing::warn!(
            error = %e,
            "no second handle on a connection's socket; long polls on it end only by time"
        ),
    }
}

/// How long a wait runs before its client is watched: a client that goes
/// away sooner is noticed this much later.
const WATCH_AFTER: std::time::Duration = std::time::Duration::from_millis(200);

/// Resolves once the client of `req` has closed its connection or reset
/// it. Never resolves while it is open, for a connection with no handle, or
/// once the client has sent more (a pipelined request: it is still there).
pub(crate) async fn gone(req: &HttpRequest) {
    let Some(Socket(socket)) = req.conn_data::<Socket>() else {
        return pending().await;
    };
    // Most waits end sooner; watching costs a handle and its registration.
    tokio::time::sleep(WATCH_AFTER).await;
    // A handle of this wait's own, registered with the event loop only for
    // as long as the wait lasts.
    let stream = socket
        .try_clone()
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .and_then(tokio::net::TcpStream::from_std);
    let Ok(stream) = stream else {
        return pending().await;
    };
    let mut byte = [0u8; 1];
    loop {
        match stream.peek(&mut byte).await {
            Ok(0) => return,
            Ok(_) => return pending().await,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}
