//! Request bodies arrive within `http.body_timeout_ms` of their headers, or
//! the request is answered `408` and its connection closed: a client sending
//! a byte a second cannot hold a worker. (Headers have their own limit, the
//! server's request timeout.)

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::rt::time::{sleep, Sleep};
use actix_web::web::Bytes;
use actix_web::HttpMessage;
use futures_util::Stream;

use crate::problem::ApiError;

/// App middleware: gives the body of a request that has one a deadline,
/// counted from when its headers were read.
pub(crate) async fn deadline(
    limit: Duration,
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let headers = req.headers();
    if headers.contains_key(header::CONTENT_LENGTH)
        || headers.contains_key(header::TRANSFER_ENCODING)
    {
        let inner = req.take_payload();
        req.set_payload(Payload::Stream {
            payload: Box::pin(Deadline {
                inner,
                timer: Box::pin(sleep(limit)),
                limit,
                expired: false,
            }),
        });
    }
    next.call(req).await
}

/// A body stream that fails with [`io::ErrorKind::TimedOut`] once its timer
/// fires before the body has ended.
struct Deadline {
    inner: Payload,
    timer: Pin<Box<Sleep>>,
    limit: Duration,
    expired: bool,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Pending => {}
            ready => return ready,
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.expired = true;
        let message = format!(
            "the body did not arrive within {} ms",
            self.limit.as_millis()
        );
        Poll::Ready(Some(Err(PayloadError::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            message,
        )))))
    }
}

/// What a failure to read a body means for the client: too slow (`408`) or
/// broken (`400`).
pub(crate) fn read_error(e: PayloadError) -> ApiError {
    match e {
        PayloadError::Io(e) if e.kind() == io::ErrorKind::TimedOut => {
            ApiError::RequestTimeout(e.to_string())
        }
        other => ApiError::BadRequest(format!("the body could not be read: {other}")),
    }
}
