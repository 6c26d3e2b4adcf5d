//! Point-in-time views of the `routes` and `retained` tables for the REST API's lists: taken
//! in O(1) under the holder's lock (the row maps are persistent), then walked, counted and
//! sorted after the lock is released, so that listing a large table never delays apply.
//!
//! Owns nothing but the views; it never changes a row and never holds an index.

use meshmq_proto::tables::RetainedMessage;

use super::{Tables, retained, routes};

/// The retained messages as they were when [`Tables::retained_view`] was called, sorted by
/// topic (expired ones included until `RetainedExpire` removes them).
#[derive(Clone)]
pub struct RetainedView(retained::Rows);

impl RetainedView {
    /// Every message, in topic order.
    pub fn iter(&self) -> impl Iterator<Item = &RetainedMessage> {
        self.0.iter().map(|m| &*m.0)
    }

    /// Number of messages in the view.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the view holds no message.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The `routes` rows as they were when [`Tables::routes_view`] was called.
#[derive(Clone)]
pub struct RoutesView(routes::Rows);

impl RoutesView {
    /// Every (filter, node) row, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().flat_map(|(node, filters)| {
            filters
                .keys()
                .map(move |filter| (filter.as_str(), node.as_str()))
        })
    }

    /// The nodes that hold a route for exactly `filter`, sorted.
    pub fn nodes_of(&self, filter: &str) -> Vec<&str> {
        let mut nodes: Vec<&str> = self
            .0
            .iter()
            .filter(|(_, filters)| filters.contains_key(filter))
            .map(|(node, _)| node.as_str())
            .collect();
        nodes.sort_unstable();
        nodes
    }

    /// The filters routed to `node` (none for an unknown node), in no particular order.
    pub fn filters_of(&self, node: &str) -> impl Iterator<Item = &str> {
        self.0
            .get(node)
            .into_iter()
            .flat_map(|filters| filters.keys().map(String::as_str))
    }
}

impl Tables {
    /// The retained messages now, as a view that later applies do not change (O(1)).
    pub fn retained_view(&self) -> RetainedView {
        RetainedView(self.retained.rows())
    }

    /// The `routes` rows now, as a view that later applies do not change (O(1)).
    pub fn routes_view(&self) -> RoutesView {
        RoutesView(self.routes.rows())
    }
}

#[cfg(test)]
mod tests {
    use meshmq_proto::tables::{RetainedSet, RouteAdd, op::Kind};

    use super::*;
    use crate::tables::tests::{node_up, op};

    #[test]
    fn views_keep_the_rows_they_were_taken_with() {
        let mut t = Tables::new();
        for node in ["n1", "n2"] {
            t.apply(1, &node_up(node, 1));
        }
        for (filter, node) in [("a/#", "n1"), ("a/#", "n2"), ("b", "n1")] {
            let add = RouteAdd {
                filter: filter.into(),
                node: node.into(),
                seq: 1,
            };
            t.apply(1, &op(Kind::RouteAdd(add)));
        }
        let message = |topic: &str| RetainedMessage {
            topic: topic.into(),
            payload: bytes::Bytes::from_static(b"p"),
            ..Default::default()
        };
        for topic in ["z", "a"] {
            let set = RetainedSet {
                message: Some(message(topic)),
                ..Default::default()
            };
            t.apply(2, &op(Kind::RetainedSet(set)));
        }
        let routes = t.routes_view();
        let retained = t.retained_view();
        let later = RetainedSet {
            message: Some(message("m")),
            ..Default::default()
        };
        t.apply(3, &op(Kind::RetainedSet(later)));
        let mut rows: Vec<_> = routes.iter().collect();
        rows.sort_unstable();
        assert_eq!(rows, [("a/#", "n1"), ("a/#", "n2"), ("b", "n1")]);
        assert_eq!(routes.nodes_of("a/#"), ["n1", "n2"]);
        assert_eq!(routes.filters_of("n2").collect::<Vec<_>>(), ["a/#"]);
        let topics: Vec<_> = retained.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(topics, ["a", "z"], "sorted, without the later message");
        assert_eq!(t.retained_view().len(), 3);
    }
}
