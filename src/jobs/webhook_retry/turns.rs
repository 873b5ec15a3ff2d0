//! Fair turns between tenants (SPEC section 6): the order a run starts its deliveries in.
//!
//! A tenant is an organization; the webhooks without one are a tenant of their own. The claim
//! takes due webhooks round-robin across tenants, oldest due first within each
//! (`sql/claim_due_webhooks.sql`), a page at a time as the deliveries need them. Here the claimed
//! rows wait, each tenant's in its own line ([`Waiting`]), and every free delivery slot goes to
//! the next tenant in turn that holds fewer than `webhook_retry_tenant_concurrency` slots. A
//! tenant at its cap gets more only when no other tenant has a webhook waiting, which the queue is
//! asked once before deciding: alone, it may use every slot. So one organization's backlog (a
//! broken integration answering slowly) never holds back another's webhooks. A run continues the
//! round where the previous one left it (kept in Redis), so that with more tenants than a run can
//! serve, each still gets its turn.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};

use serde_json::json;

use super::queue::{Claimed, Queue};
use super::JobContext;
use crate::db::DbError;
use crate::redis;

/// An organization's id, or `None` for the webhooks without one.
pub type Tenant = Option<String>;

/// Delivery slots each tenant holds right now: counted up when a webhook is handed out,
/// down when its delivery ends.
#[derive(Default)]
pub struct Slots(RefCell<HashMap<Tenant, usize>>);

impl Slots {
    fn held(&self, tenant: &Tenant) -> usize {
        self.0.borrow().get(tenant).copied().unwrap_or(0)
    }

    fn take(&self, tenant: &Tenant) {
        *self.0.borrow_mut().entry(tenant.clone()).or_default() += 1;
    }

    pub fn give_back(&self, tenant: &Tenant) {
        if let Some(n) = self.0.borrow_mut().get_mut(tenant) {
            *n = n.saturating_sub(1);
        }
    }
}

/// Claimed webhooks not started yet, a line per tenant, the tenants in turn order.
#[derive(Default)]
pub struct Waiting {
    lines: Vec<(Tenant, VecDeque<Claimed>)>,
    /// The tenant whose turn is next.
    next: usize,
}

/// What [`Waiting::take`] found.
#[derive(Debug)]
enum Taken {
    Row(Claimed),
    /// Webhooks wait, but every tenant they belong to holds its share of slots.
    AllAtCap,
    Empty,
}

impl Waiting {
    /// Rows as a claim returns them (in turn order): each joins its tenant's line, a new
    /// tenant at the end of the round.
    pub fn add(&mut self, rows: Vec<Claimed>) {
        for row in rows {
            match self.lines.iter_mut().find(|(t, _)| *t == row.tenant) {
                Some((_, line)) => line.push_back(row),
                None => self.lines.push((row.tenant.clone(), VecDeque::from([row]))),
            }
        }
    }

    /// The next tenant in turn holding fewer than `cap` slots gives its oldest; with
    /// `alone`, a single tenant still waiting gives one whatever it holds.
    fn take(&mut self, slots: &Slots, cap: usize, alone: bool) -> Taken {
        // The turn stays with the same tenant when lines before it empty.
        let (mut at, mut next) = (0, self.next);
        self.lines.retain(|(_, line)| {
            let keep = !line.is_empty();
            next -= usize::from(!keep && at < self.next);
            at += 1;
            keep
        });
        self.next = next;
        if self.lines.is_empty() {
            return Taken::Empty;
        }
        let n = self.lines.len();
        let eligible = (0..n).map(|i| (self.next + i) % n).find(|&i| slots.held(&self.lines[i].0) < cap);
        let at = match eligible {
            Some(i) => i,
            None if alone && n == 1 => 0,
            None => return Taken::AllAtCap,
        };
        self.next = at + 1;
        match self.lines[at].1.pop_front() {
            Some(row) => Taken::Row(row),
            None => Taken::Empty,
        }
    }

    pub fn unread(self) -> impl Iterator<Item = Claimed> {
        self.lines.into_iter().flat_map(|(_, line)| line)
    }
}

/// Where the claims stand in their round of tenants.
struct Round {
    /// The last tenant the previous claim visited; `None` starts a round.
    after: Option<String>,
    /// Whether this round visits every tenant (it began at the start, not where the previous
    /// run's ended).
    whole: bool,
    /// Whether this round has claimed anything yet.
    claimed: bool,
    /// A whole round claimed nothing: no tenant has a due webhook left.
    exhausted: bool,
}

impl Round {
    fn after(after: Option<String>) -> Self {
        Self { whole: after.is_none(), after, claimed: false, exhausted: false }
    }

    /// A claim visited up to `last`, and the round `ended` there.
    fn visited(&mut self, got: bool, last: Option<String>, ended: bool) {
        self.claimed |= got;
        if ended {
            let exhausted = self.whole && !self.claimed;
            *self = Self { exhausted, ..Self::after(None) };
        } else {
            self.after = last;
        }
    }
}

/// The run's claimed webhooks in the order their deliveries should start: an iterator that
/// may have nothing to give now (every waiting tenant at its cap) and more after a delivery ends.
pub struct Turns<'a> {
    ctx: &'a JobContext<'a>,
    queue: &'a Queue<'a>,
    slots: &'a Slots,
    stop: &'a Cell<bool>,
    lease_secs: u64,
    page: u32,
    /// Webhooks this run may still claim (`webhook_retry_batch_size`).
    left: u32,
    round: Round,
    waiting: Waiting,
    /// Set when the queue was asked because every waiting tenant was at its cap: until a row is
    /// handed out under the cap, the answer stands.
    asked_at_cap: bool,
    pub error: Option<DbError>,
}

impl<'a> Turns<'a> {
    pub fn new(
        ctx: &'a JobContext<'a>,
        queue: &'a Queue<'a>,
        slots: &'a Slots,
        stop: &'a Cell<bool>,
        lease_secs: u64,
        page: u32,
        after: Option<String>,
    ) -> Self {
        Self {
            ctx,
            queue,
            slots,
            stop,
            lease_secs,
            page,
            left: ctx.settings.batch_size,
            round: Round::after(after),
            waiting: Waiting::default(),
            asked_at_cap: false,
            error: None,
        }
    }

    /// Claims the next page with anything in it, continuing the round of tenants: whether any
    /// row came.
    fn claim(&mut self) -> bool {
        loop {
            if self.left == 0 || self.round.exhausted || self.error.is_some() {
                return false;
            }
            let page = match self.queue.claim(
                self.left.min(self.page),
                self.lease_secs,
                self.round.after.as_deref(),
            ) {
                Ok(page) => page,
                Err(e) => {
                    self.error = Some(e);
                    return false;
                }
            };
            let got = !page.claimed.is_empty();
            self.left -= page.claimed.len() as u32;
            let ended = page.round_ended || page.last_tenant.is_none();
            self.round.visited(got, page.last_tenant, ended);
            if got {
                self.waiting.add(page.claimed);
                return true;
            }
        }
    }

    /// The last tenant visited in the round: where the next run's continues (`None`: a new one).
    pub fn round(&self) -> Option<&str> {
        self.round.after.as_deref()
    }

    /// What was claimed and not handed out.
    pub fn unread(self) -> impl Iterator<Item = Claimed> {
        self.waiting.unread()
    }
}

impl Iterator for Turns<'_> {
    type Item = Claimed;

    fn next(&mut self) -> Option<Claimed> {
        if self.stop.get() || self.ctx.deadline.passed() {
            return None;
        }
        let cap = self.ctx.settings.tenant_concurrency;
        loop {
            match self.waiting.take(self.slots, cap, self.asked_at_cap) {
                Taken::Row(row) => {
                    self.asked_at_cap &= self.slots.held(&row.tenant) >= cap;
                    self.slots.take(&row.tenant);
                    return Some(row);
                }
                Taken::AllAtCap if self.asked_at_cap => return None,
                Taken::AllAtCap => {
                    self.asked_at_cap = true;
                    self.claim();
                }
                Taken::Empty if self.claim() => {}
                Taken::Empty => return None,
            }
        }
    }
}

/// Where the previous run left the round of tenants (Redis), so that a run that cannot get
/// through every tenant does not start with the same ones each time. Unknown: a new round.
pub fn saved_round(ctx: &JobContext<'_>) -> Option<String> {
    match ctx.redis.values(&[redis::WEBHOOK_ROUND_KEY]) {
        Ok(values) => values.into_iter().flatten().find(|after| !after.is_empty()),
        Err(e) => {
            ctx.log.warn("the round of tenants starts anew", json!({ "error": e.to_string() }));
            None
        }
    }
}

pub fn save_round(ctx: &JobContext<'_>, after: Option<&str>) {
    if let Err(e) = ctx.redis.save_webhook_round(after.unwrap_or_default()) {
        ctx.log.warn("where the round of tenants stands was not saved", json!({ "error": e.to_string() }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(tenant: &str, n: u32) -> Claimed {
        Claimed {
            id: format!("{tenant}{n}"),
            retry_count: 0,
            body: String::new(),
            tenant: (!tenant.is_empty()).then(|| tenant.to_owned()),
        }
    }

    fn taken(waiting: &mut Waiting, slots: &Slots, cap: usize, alone: bool) -> Option<String> {
        match waiting.take(slots, cap, alone) {
            Taken::Row(r) => {
                slots.take(&r.tenant);
                Some(r.id)
            }
            Taken::AllAtCap => Some("at cap".into()),
            Taken::Empty => None,
        }
    }

    #[test]
    fn tenants_take_turns_oldest_first_within_each() {
        let mut waiting = Waiting::default();
        waiting.add(vec![row("a", 1), row("b", 1), row("", 1), row("a", 2), row("a", 3)]);
        let slots = Slots::default();
        let order: Vec<_> = std::iter::from_fn(|| taken(&mut waiting, &slots, 10, false)).collect();
        assert_eq!(order, ["a1", "b1", "1", "a2", "a3"]);
    }

    #[test]
    fn a_tenant_at_its_cap_waits_while_another_has_webhooks_waiting() {
        let mut waiting = Waiting::default();
        waiting.add((1..=5).map(|n| row("a", n)).chain((1..=3).map(|n| row("b", n))).collect());
        let slots = Slots::default();
        let first: Vec<_> = (0..5).map(|_| taken(&mut waiting, &slots, 2, false).unwrap()).collect();
        assert_eq!(first, ["a1", "b1", "a2", "b2", "at cap"]);
        // Asked while others wait, the queue's answer changes nothing: both still wait.
        assert_eq!(taken(&mut waiting, &slots, 2, true).as_deref(), Some("at cap"));
        slots.give_back(&Some("b".into()));
        assert_eq!(taken(&mut waiting, &slots, 2, false).as_deref(), Some("b3"));
        // B has nothing left waiting: A is alone, and once the queue has nothing for anyone
        // else, it goes over its cap.
        assert_eq!(taken(&mut waiting, &slots, 2, false).as_deref(), Some("at cap"));
        assert_eq!(taken(&mut waiting, &slots, 2, true).as_deref(), Some("a3"));
        assert_eq!(slots.held(&Some("a".into())), 3);
    }

    #[test]
    fn only_a_whole_round_that_claimed_nothing_ends_the_claims() {
        // Continuing where the previous run left off: its end says nothing of the tenants before.
        let mut round = Round::after(Some("m".into()));
        round.visited(false, Some("z".into()), true);
        assert!(!round.exhausted && round.whole && round.after.is_none());
        round.visited(true, Some("k".into()), false);
        assert_eq!(round.after.as_deref(), Some("k"));
        round.visited(false, Some("z".into()), true);
        assert!(!round.exhausted, "this round claimed something: another one may too");
        round.visited(false, None, true);
        assert!(round.exhausted);
    }

    #[test]
    fn what_was_not_handed_out_is_unread() {
        let mut waiting = Waiting::default();
        waiting.add(vec![row("a", 1), row("b", 1), row("a", 2)]);
        let slots = Slots::default();
        taken(&mut waiting, &slots, 4, false);
        let mut left: Vec<_> = waiting.unread().map(|r| r.id).collect();
        left.sort();
        assert_eq!(left, ["a2", "b1"]);
    }
}
