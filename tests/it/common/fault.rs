//! What the fault proxy does with a request, and which requests: `Fault::on(method, path)`
//! picks them, so a test names the request it breaks instead of writing a matching closure.

use std::future::Future;
use std::pin::Pin;

/// A write of someone else's, made with the client the proxy hands it.
pub type Race = dyn FnOnce(kube::Client) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send;

/// What to do with one request.
pub enum Fault {
    Forward,
    /// Answer with this status (and a Retry-After of `retry_after` seconds, if any).
    Status {
        code: u16,
        retry_after: Option<u32>,
    },
    /// Never answer.
    Hang,
    /// Answer 200 with a body that is not JSON: a list that fails to parse.
    Garbage,
    /// Run this first (for example a racing write), then forward. Built with [`Fault::before`].
    Before(Box<Race>),
    /// Forward (the server acts on it), then hold the answer back this long: a client with a
    /// shorter timeout gives up on a request that was carried out.
    SlowAnswer(std::time::Duration),
}

impl Fault {
    /// Run `race` first, then forward. It gets the proxy's admin client: one the test made
    /// lives on the test's runtime, which is blocked while the tool runs.
    pub fn before<F, Fut>(race: F) -> Self
    where
        F: FnOnce(kube::Client) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::Before(Box::new(move |client| Box::pin(race(client))))
    }

    /// Answer with this status, without a Retry-After.
    pub fn status(code: u16) -> Self {
        Self::Status {
            code,
            retry_after: None,
        }
    }
}

/// Decides per request: method, path (with query), and how many earlier requests had the same
/// method and path. `FaultProxy::start` takes any such function; [`On`] builds the usual ones.
pub type Rule = dyn Fn(&str, &str, usize) -> Fault + Send + Sync;

/// Which requests a fault is for: any of a set of (method, path prefix), optionally only the
/// first few of each and only with a given query part. Built with [`Fault::on`] or
/// [`Fault::any`].
pub struct On {
    requests: Vec<(String, String)>,
    query: Option<String>,
    first: Option<usize>,
}

impl Fault {
    /// Requests whose method is `method` (`"*"` for any, `"!GET"` for any but GET) and whose
    /// path, query included, starts with `path`.
    pub fn on(method: &str, path: impl Into<String>) -> On {
        Self::any([(method, path.into())])
    }

    /// Requests that any of these (method, path prefix) pairs picks, as [`Fault::on`] does.
    pub fn any<'a>(requests: impl IntoIterator<Item = (&'a str, String)>) -> On {
        On {
            requests: requests
                .into_iter()
                .map(|(m, p)| (m.to_string(), p))
                .collect(),
            query: None,
            first: None,
        }
    }
}

impl On {
    /// Only requests whose path and query contain `part` (e.g. `force=true`).
    pub fn with_query(mut self, part: &str) -> Self {
        self.query = Some(part.to_string());
        self
    }

    /// Only the first `n` requests of each method and path (query included); later ones are
    /// forwarded.
    pub fn first(mut self, n: usize) -> Self {
        self.first = Some(n);
        self
    }

    /// Whether a request is one of these, `n` being how many earlier requests had the same
    /// method and path (query included).
    pub fn matches(&self, method: &str, path: &str, n: usize) -> bool {
        let method_is = |m: &str| match m.strip_prefix('!') {
            Some(not) => method != not,
            None => m == "*" || m == method,
        };
        self.first.is_none_or(|first| n < first)
            && self
                .query
                .as_ref()
                .is_none_or(|q| path.contains(q.as_str()))
            && self
                .requests
                .iter()
                .any(|(m, p)| method_is(m) && path.starts_with(p.as_str()))
    }

    /// A proxy rule: `fault(path)` for these requests, everything else forwarded.
    pub fn then(self, fault: impl Fn(&str) -> Fault + Send + Sync + 'static) -> Box<Rule> {
        Box::new(move |m, p, n| {
            if self.matches(m, p, n) {
                fault(p)
            } else {
                Fault::Forward
            }
        })
    }

    /// These requests are never answered.
    pub fn hang(self) -> Box<Rule> {
        self.then(|_| Fault::Hang)
    }

    /// These requests are answered with `code` at once.
    pub fn status(self, code: u16) -> Box<Rule> {
        self.then(move |_| Fault::status(code))
    }
}

/// A rule: the first of each of `requests` (method and path) is carried out and answered
/// `late`; everything else is forwarded.
pub fn late_first(requests: Vec<(&'static str, String)>, late: std::time::Duration) -> Box<Rule> {
    Fault::any(requests)
        .first(1)
        .then(move |_| Fault::SlowAnswer(late))
}
