//! Pages of `ListExperiments` and `ListTrials`, so no answer outgrows what a client can decode
//! (tonic's default limit is 4 MiB; after three 10 MB specs `tunectl list` once failed for
//! everyone).
//!
//! A page holds at most the asked `page_size` items (0: [`DEFAULT_PAGE_SIZE`]; capped at
//! [`MAX_PAGE_SIZE`]) and stops before its encoding passes [`MAX_PAGE_BYTES`] (at least one item,
//! which the per-item limits keep under 4 MiB). The page token is the index of the next item, as
//! text: lists only grow at their end (experiments and trials are never deleted), so a token
//! stays valid while items are added.
//!
//! ```
//! use coordinator::grpc::paging::{Window, page_of};
//! let window = Window::parse("", 2).expect("the first page");
//! let items = vec![1u32, 2, 3]; // the service returns `window.page()`: limit + 1 items
//! let (page, next) = page_of(&window, items, |_| 4);
//! assert_eq!((page, next.as_str()), (vec![1, 2], "2"));
//! ```

use crate::service::Page;
use crate::{Error, Result};

/// Items in a page when the request does not say.
pub const DEFAULT_PAGE_SIZE: usize = 1000;

/// The most items in a page.
pub const MAX_PAGE_SIZE: usize = 10_000;

/// A page stops before its encoded items pass this many bytes.
pub const MAX_PAGE_BYTES: usize = 2 << 20;

/// Where a page starts and how many items it may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Index of the first item.
    pub from: usize,
    /// Most items.
    pub size: usize,
}

impl Window {
    /// The window a request asks for.
    ///
    /// # Errors
    /// `InvalidArgument` for a token this server did not give.
    pub fn parse(token: &str, page_size: u32) -> Result<Self> {
        let from = if token.is_empty() {
            0
        } else {
            token.parse::<usize>().map_err(|_| {
                Error::InvalidArgument(format!(
                    "page_token '{}' is not one this server gave (use next_page_token)",
                    crate::service::limits::short(token)
                ))
            })?
        };
        let size = match page_size as usize {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        Ok(Self { from, size })
    }

    /// What to ask the service for: one item more than the page holds, to know whether more
    /// follow.
    pub fn page(&self) -> Page {
        Page {
            from: self.from,
            limit: self.size + 1,
        }
    }
}

/// Cuts the items the service returned for `window.page()` into the page to send (within the
/// size and [`MAX_PAGE_BYTES`], by `encoded_len`) and the next token (empty when none follow).
pub fn page_of<T>(
    window: &Window,
    items: Vec<T>,
    encoded_len: impl Fn(&T) -> usize,
) -> (Vec<T>, String) {
    let available = items.len();
    let mut bytes = 0usize;
    let mut page = Vec::with_capacity(available.min(window.size));
    for item in items.into_iter().take(window.size) {
        let len = encoded_len(&item);
        if !page.is_empty() && bytes + len > MAX_PAGE_BYTES {
            break;
        }
        bytes += len;
        page.push(item);
    }
    let next = if page.len() < available {
        (window.from + page.len()).to_string()
    } else {
        String::new()
    };
    (page, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_sizes() {
        assert_eq!(
            Window::parse("", 0).expect("first"),
            Window {
                from: 0,
                size: DEFAULT_PAGE_SIZE
            }
        );
        assert_eq!(
            Window::parse("42", 1_000_000).expect("capped").size,
            MAX_PAGE_SIZE
        );
        assert_eq!(Window::parse("42", 5).expect("later").from, 42);
        let err = Window::parse("-1", 5).expect_err("not a token");
        assert!(err.to_string().contains("page_token '-1'"), "{err}");
    }

    #[test]
    fn a_page_stops_at_its_size_or_its_bytes_and_says_what_follows() {
        let window = Window::parse("10", 3).expect("window");
        let (page, next) = page_of(&window, vec![1, 2, 3, 4], |_| 1);
        assert_eq!((page, next.as_str()), (vec![1, 2, 3], "13"));
        let (page, next) = page_of(&window, vec![1, 2], |_| 1);
        assert_eq!((page, next.as_str()), (vec![1, 2], ""));
        let (page, next) = page_of(&window, vec![1, 2, 3, 4], |_| MAX_PAGE_BYTES / 2 + 1);
        assert_eq!((page, next.as_str()), (vec![1], "11"));
        let (page, next) = page_of(&window, vec![1], |_| 10 * MAX_PAGE_BYTES);
        assert_eq!((page, next.as_str()), (vec![1], ""), "one item always fits");
        let (page, next) = page_of(&window, Vec::<u8>::new(), |_| 1);
        assert!(page.is_empty() && next.is_empty());
    }
}
