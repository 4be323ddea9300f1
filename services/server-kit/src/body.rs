//! Reading an upstream's answer with a size limit: a hostile or broken upstream must not be able
//! to exhaust memory.

/// The largest response body read from an upstream (the weather API, Open-Meteo): every real
/// answer is a few KiB.
pub const MAX_RESPONSE_BODY: usize = 1 << 20;

/// Why a response body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is larger than the limit (announced, or found while reading).
    #[error(
        "the response body is larger than {limit} bytes (the limit for this hop); the upstream is broken or is not the service configured"
    )]
    TooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// The connection failed while the body was read.
    #[error("the connection broke while the response was read")]
    Transport(#[source] reqwest::Error),
}

/// Reads `resp`'s body, at most `limit` bytes: refused at once when `Content-Length` announces
/// more, and as soon as more arrives otherwise (a chunked body is never buffered past the limit).
pub async fn read_body(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| BodyError::Transport(e.without_url()))?
    {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
