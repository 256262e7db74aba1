//! Guards against per-step checks that let a safety violation through, or
//! that flag what Raft allows: each test feeds a hand-made history.

use finkfs_sim::{NodeView, SafetyChecker, SafetyViolation};

fn leader(term: u64, committed: u64) -> NodeView {
    NodeView {
        vote_term: term,
        leader: None,
        leads: true,
        committed: Some(committed),
        applied: Some(committed),
    }
}

fn follower(term: u64, committed: Option<u64>, applied: Option<u64>) -> NodeView {
    NodeView {
        vote_term: term,
        leader: Some(1),
        leads: false,
        committed,
        applied,
    }
}

#[test]
fn two_leaders_in_one_term_are_caught_across_incarnations() {
    let mut checker = SafetyChecker::new();
    assert_eq!(checker.observe((1, 0), leader(3, 5)), Ok(()));
    assert_eq!(
        checker.observe((1, 1), leader(3, 5)),
        Ok(()),
        "same node again"
    );
    assert_eq!(
        checker.observe((2, 0), leader(4, 6)),
        Ok(()),
        "a later term"
    );
    let twice = checker.observe((3, 0), leader(3, 5));
    assert_eq!(
        twice,
        Err(SafetyViolation::TwoLeaders {
            term: 3,
            first: 1,
            second: 3
        })
    );
}

#[test]
fn values_that_go_back_within_an_incarnation_are_caught() {
    let mut checker = SafetyChecker::new();
    checker
        .observe((2, 0), follower(5, Some(10), Some(9)))
        .unwrap();
    let committed_back = checker.observe((2, 0), follower(5, Some(8), Some(9)));
    assert!(matches!(
        committed_back,
        Err(SafetyViolation::WentBack {
            what: "committed index",
            from: 10,
            to: 8,
            ..
        })
    ));
    let mut checker = SafetyChecker::new();
    checker
        .observe((2, 0), follower(5, Some(10), Some(9)))
        .unwrap();
    let term_back = checker.observe((2, 0), follower(4, Some(10), Some(9)));
    assert!(matches!(
        term_back,
        Err(SafetyViolation::WentBack {
            what: "vote term",
            ..
        })
    ));
    let mut checker = SafetyChecker::new();
    checker
        .observe((2, 0), follower(5, Some(10), Some(9)))
        .unwrap();
    let applied_lost = checker.observe((2, 0), follower(5, Some(10), None));
    assert!(matches!(
        applied_lost,
        Err(SafetyViolation::WentBack {
            what: "applied index",
            ..
        })
    ));
}

#[test]
fn a_restart_may_start_lower_and_progress_is_fine() {
    let mut checker = SafetyChecker::new();
    checker
        .observe((2, 0), follower(5, Some(10), Some(10)))
        .unwrap();
    assert_eq!(
        checker.observe((2, 1), follower(5, Some(7), Some(3))),
        Ok(()),
        "a new incarnation starts from what was durable"
    );
    assert_eq!(
        checker.observe((2, 1), follower(6, Some(12), Some(12))),
        Ok(())
    );
}

#[test]
fn blocked_node_granting_a_vote_breaks_invariant_five_until_cleared() {
    let mut checker = SafetyChecker::new();
    checker.set_blocked((3, 1), Some("vote lost".into()));
    assert_eq!(
        checker.vote_granted((3, 0), 4),
        Ok(()),
        "another incarnation"
    );
    assert!(matches!(
        checker.vote_granted((3, 1), 5),
        Err(SafetyViolation::BlockedVoteGranted { term: 5, .. })
    ));
    checker.set_blocked((3, 1), None);
    assert_eq!(checker.vote_granted((3, 1), 6), Ok(()));
}

#[test]
fn under_leader_id_adv_a_higher_node_may_lead_the_same_term_later() {
    // openraft's leader_id_adv orders leaders by (term, node id): node 3
    // may win term 4 after node 2 led it, a legal run the checker for that
    // mode must accept, while the standard one refuses it.
    let mut adv = SafetyChecker::with_several_leaders_per_term();
    adv.observe((2, 1), leader(4, 10))
        .expect("first leader of term 4");
    adv.observe((3, 1), leader(4, 12))
        .expect("a higher node id may lead term 4 too");
    let mut standard = SafetyChecker::new();
    standard
        .observe((2, 1), leader(4, 10))
        .expect("first leader of term 4");
    assert!(standard.observe((3, 1), leader(4, 12)).is_err());
}
