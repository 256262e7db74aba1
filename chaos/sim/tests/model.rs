//! Guards against a checker model that excuses a lost or resurrected write,
//! or that blames the cluster for an answer a real network allows: each
//! test is a hand-made history with the verdict a correct model must give.

use finkfs_sim::{Model, ModelViolation, Observed, Outcome, Value};

fn put(model: &mut Model, path: &str, op: u64, outcome: Outcome) {
    model.send(path, Value::Written(op));
    model.finish(path, Value::Written(op), outcome);
}

fn read(model: &mut Model, path: &str, observed: Observed) -> Result<(), ModelViolation> {
    let ticket = model.begin_read(path);
    model.end_read(ticket, &observed)
}

#[test]
fn acknowledged_write_must_be_read_back() {
    let mut model = Model::new();
    put(&mut model, "a", 1, Outcome::Acknowledged(10));
    assert_eq!(read(&mut model, "a", Observed::Object(1)), Ok(()));
    let lost = read(&mut model, "a", Observed::NotFound);
    assert!(
        matches!(lost, Err(ModelViolation::Inadmissible { .. })),
        "{lost:?}"
    );
}

#[test]
fn overwritten_value_must_not_come_back() {
    let mut model = Model::new();
    put(&mut model, "a", 1, Outcome::Acknowledged(10));
    put(&mut model, "a", 2, Outcome::Acknowledged(11));
    let stale = read(&mut model, "a", Observed::Object(1));
    assert!(matches!(stale, Err(ModelViolation::Inadmissible { .. })));
}

#[test]
fn acknowledged_delete_must_stay_deleted() {
    let mut model = Model::new();
    put(&mut model, "a", 1, Outcome::Acknowledged(10));
    model.send("a", Value::Absent);
    model.finish("a", Value::Absent, Outcome::Acknowledged(11));
    assert_eq!(read(&mut model, "a", Observed::NotFound), Ok(()));
    assert!(read(&mut model, "a", Observed::Object(1)).is_err());
}

#[test]
fn rejected_write_has_no_effect() {
    let mut model = Model::new();
    put(&mut model, "a", 1, Outcome::Rejected);
    assert_eq!(read(&mut model, "a", Observed::NotFound), Ok(()));
    assert!(read(&mut model, "a", Observed::Object(1)).is_err());
}

#[test]
fn write_in_doubt_may_or_may_not_be_there_until_seen_once() {
    let mut model = Model::new();
    put(&mut model, "a", 1, Outcome::Acknowledged(10));
    put(&mut model, "a", 2, Outcome::InDoubt);
    assert!(!model.writable("a"), "a path in doubt is retired");
    assert_eq!(read(&mut model, "a", Observed::Object(1)), Ok(()));
    assert_eq!(read(&mut model, "a", Observed::Object(2)), Ok(()));
    // Seen once, the doubtful write took effect for good.
    let back = read(&mut model, "a", Observed::Object(1));
    assert!(
        matches!(back, Err(ModelViolation::Inadmissible { .. })),
        "{back:?}"
    );
}

#[test]
fn read_racing_a_write_may_see_either_side() {
    let mut model = Model::new();
    put(&mut model, "a", 1, Outcome::Acknowledged(10));
    let ticket = model.begin_read("a");
    model.send("a", Value::Written(2));
    model.finish("a", Value::Written(2), Outcome::Acknowledged(11));
    assert_eq!(model.end_read(ticket, &Observed::Object(1)), Ok(()));
    let ticket = model.begin_read("a");
    assert!(
        model.end_read(ticket, &Observed::Object(1)).is_err(),
        "a read that starts after the acknowledgement sees the new value"
    );
}

#[test]
fn write_in_flight_is_admissible_before_its_acknowledgement() {
    let mut model = Model::new();
    model.send("a", Value::Written(5));
    assert_eq!(read(&mut model, "a", Observed::Object(5)), Ok(()));
    assert_eq!(read(&mut model, "a", Observed::NotFound), Ok(()));
}

#[test]
fn damaged_bytes_fail_invariant_two_and_refusals_are_not_violations() {
    let mut model = Model::new();
    put(&mut model, "a", 1, Outcome::Acknowledged(10));
    let garbage = read(&mut model, "a", Observed::Garbage("byte 77 differs".into()));
    assert!(matches!(garbage, Err(ModelViolation::Garbage { .. })));
    assert_eq!(
        read(&mut model, "a", Observed::Refused("DATA_LOSS".into())),
        Ok(())
    );
}

#[test]
fn settled_paths_are_the_ones_to_read_back_at_the_end() {
    let mut model = Model::new();
    put(&mut model, "a", 1, Outcome::Acknowledged(10));
    put(&mut model, "b", 2, Outcome::InDoubt);
    put(&mut model, "c", 3, Outcome::Rejected);
    assert_eq!(model.settled(), vec![("a".to_string(), Value::Written(1))]);
    assert_eq!(model.acknowledged_ops(), 1);
}
