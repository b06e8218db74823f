//! The live event stream: `GET /api/v1/events/ws` upgrades to a WebSocket
//! that sends each sealed event the query selects as one text message (the
//! public event schema, or OCSF), in log order, from a given position.
//!
//! Authentication: a bearer token or API key of an administrator or
//! auditor, in the `Authorization`/`X-Api-Key` header or, for browsers,
//! the `token` query parameter. Filters: `types`, `users` (comma-separated),
//! `path_prefix`, `outcome`; `format` (`tollgate`, `ocsf`); `from` (deliver
//! the events after this position; default: from now on).
//!
//! Back-pressure: events are read from the log only as fast as the client
//! takes them, so nothing queues in memory; a client that does not take a
//! message within the send timeout is disconnected with close code 1008
//! and a reason naming the position to resume from (the message that was
//! in flight may still arrive: delivery is at least once, ids are stable).

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use poem::web::websocket::{CloseCode, Message, WebSocket};
use poem::web::{Data, Query};
use poem::{IntoResponse, Request, handler};
use serde::Deserialize;
use tollgate_domain::subscription::{EventFormat, SubscriptionFilter};
use tollgate_ports::api::{AdminApi, StreamFilter};

use crate::problem::Problem;
use crate::routes::client;

/// Where the stream is served.
pub(crate) const PATH: &str = "/api/v1/events/ws";

/// Events examined per read of the log.
const PAGE: u32 = 200;

/// How long an idle stream waits for a commit before looking again
/// (commits by other nodes are seen this way).
const IDLE: Duration = Duration::from_millis(500);

/// How long a disconnected slow client has to read the close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// The stream's settings.
#[derive(Clone, Copy)]
pub(crate) struct StreamConfig {
    /// A message not taken by the client within this time ends the stream.
    pub(crate) send_timeout: Duration,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Params {
    token: Option<String>,
    types: Option<String>,
    users: Option<String>,
    path_prefix: Option<String>,
    outcome: Option<String>,
    format: Option<String>,
    from: Option<u64>,
}

fn list(text: Option<&String>) -> Vec<String> {
    text.map(|t| {
        t.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    })
    .unwrap_or_default()
}

/// A refusal before the upgrade, as a problem document.
fn refuse(problem: Problem) -> poem::Error {
    poem::Error::from_response(problem.into_response())
}

#[handler]
pub(crate) async fn events_ws(
    req: &Request,
    ws: WebSocket,
    Query(params): Query<Params>,
    Data(port): Data<&Arc<dyn AdminApi>>,
    Data(config): Data<&StreamConfig>,
) -> poem::Result<impl IntoResponse> {
    let client = client(req);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let bearer = header("authorization")
        .and_then(|v| v.strip_prefix("Bearer ").map(str::to_string))
        .or(params.token.clone());
    let by = match (bearer, header("x-api-key")) {
        (Some(token), _) => port.authenticate_token(&client, &token).await,
        (None, Some(key)) => port.authenticate_api_key(&client, &key).await,
        (None, None) => {
            return Err(refuse(Problem::unauthorized(
                "a bearer token or an API key is required",
            )));
        }
    }
    .map_err(|e| refuse(Problem::from(e)))?;
    let format = match params.format.as_deref() {
        None | Some("tollgate") => EventFormat::Tollgate,
        Some("ocsf") => EventFormat::Ocsf,
        Some(other) => {
            return Err(refuse(Problem::bad_request(format!(
                "format {other:?} is neither tollgate nor ocsf"
            ))));
        }
    };
    if let Some(outcome) = &params.outcome
        && !matches!(
            outcome.as_str(),
            "success" | "failure" | "denied" | "aborted"
        )
    {
        return Err(refuse(Problem::bad_request(format!(
            "outcome {outcome:?} is unknown"
        ))));
    }
    let stream = StreamFilter {
        filter: SubscriptionFilter {
            event_types: list(params.types.as_ref()),
            users: list(params.users.as_ref()),
            path_prefix: params.path_prefix.clone(),
            outcome: params.outcome.clone(),
        },
        format,
    };
    let query = format!(
        "live stream: types={:?} users={:?} path_prefix={:?} outcome={:?} from={:?}",
        stream.filter.event_types,
        stream.filter.users,
        stream.filter.path_prefix,
        stream.filter.outcome,
        params.from
    );
    let head = port
        .open_event_stream(&by, &query)
        .await
        .map_err(|e| refuse(Problem::from(e)))?;
    let port = port.clone();
    let send_timeout = config.send_timeout;
    let start = params.from.unwrap_or(head);
    Ok(ws.on_upgrade(move |socket| async move {
        let (mut sink, mut incoming) = socket.split();
        let mut after = start;
        loop {
            let before = after;
            let page = match port.stream_events(&by, &stream, after, PAGE).await {
                Ok(page) => page,
                Err(err) => {
                    let reason = format!("the stream stopped: {err}; resume from position {after}");
                    let _ = sink
                        .send(Message::Close(Some((CloseCode::Error, reason))))
                        .await;
                    return;
                }
            };
            for (position, body) in page.events {
                match tokio::time::timeout(send_timeout, sink.send(Message::Text(body))).await {
                    Ok(Ok(())) => after = position,
                    // The client went away.
                    Ok(Err(_)) => return,
                    Err(_) => {
                        let reason = format!("too slow: resume from position {after}");
                        tracing::info!(after, "a slow event stream client was disconnected");
                        // The close frame queues behind what the client has
                        // not read: it gets it if it reads again soon.
                        let _ = tokio::time::timeout(
                            CLOSE_GRACE,
                            sink.send(Message::Close(Some((CloseCode::Policy, reason)))),
                        )
                        .await;
                        return;
                    }
                }
            }
            after = after.max(page.examined_to);
            if after > before {
                continue;
            }
            tokio::select! {
                _ = port.wait_for_commit(IDLE) => {}
                message = incoming.next() => match message {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                },
            }
        }
    }))
}
