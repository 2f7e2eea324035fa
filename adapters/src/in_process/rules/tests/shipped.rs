//! The shipped rules reproduce the behaviour every black-box test relies on.

use serde_json::json;

use super::*;

#[test]
fn the_shipped_rules_parse() {
    let shipped = parse_shipped(SHIPPED).expect("default_rules.toml is valid");
    assert_eq!(shipped.len(), 10);
}

#[test]
fn the_shipped_rules_drive_every_path_of_the_order_saga() {
    let r = rules(vec![], true);
    let items = |skus: &[&str]| json!({ "order_id": "o-1", "items": skus.iter().map(|s| json!({ "sku": s, "qty": 1 })).collect::<Vec<_>>() });
    let reserve = |skus| command("inventory", "order.inventory.reserve.v1", items(skus));
    let release = |skus| command("inventory", "order.inventory.release.v1", items(skus));
    let charge = |customer: &str, cents: i64| {
        let data = json!({ "order_id": "o-1", "customer_id": customer, "amount_cents": cents });
        command("payment", "order.payment.charge.v1", data)
    };
    let confirm = |order: &str| {
        command(
            "order",
            "order.order.confirm.v1",
            json!({ "order_id": order }),
        )
    };

    assert_eq!(r.answer(&reserve(&["SKU-1"]), false), succeeded());
    assert_eq!(r.answer(&reserve(&["SKU-1", "HANG-2"]), false), None);
    assert_eq!(
        r.answer(&reserve(&["SKU-1", "OOS-2"]), false),
        refused("out of stock: OOS-2")
    );
    // Silence wins over a refusal, as the first of the two rules.
    assert_eq!(r.answer(&reserve(&["OOS-1", "HANG-2"]), false), None);
    assert_eq!(
        r.answer(&release(&["STUCK-1"]), false),
        failed("cannot release STUCK-1")
    );
    assert_eq!(r.answer(&release(&["STUCK-1"]), true), succeeded());
    // Only the reservation hangs or refuses; only the release gets stuck.
    assert_eq!(r.answer(&release(&["HANG-1", "OOS-1"]), false), succeeded());
    assert_eq!(r.answer(&reserve(&["STUCK-1"]), false), succeeded());

    let charge_id = result(json!({ "charge_id": "ch-saga-1:a-step" }));
    assert_eq!(r.answer(&charge("c-1", 1_000_000), false), charge_id);
    assert_eq!(r.answer(&charge("HANG-1", 10), false), None);
    assert_eq!(
        r.answer(&charge("c-1", 1_000_001), false),
        refused("declined: 1000001 cents is above the limit of 1000000")
    );
    let refund = command(
        "payment",
        "order.payment.refund.v1",
        json!({ "amount_cents": 5 }),
    );
    assert_eq!(r.answer(&refund, false), succeeded());

    assert_eq!(r.answer(&confirm("o-1"), false), succeeded());
    assert_eq!(
        r.answer(&confirm("NOCONFIRM-1"), false),
        refused("the order cannot be confirmed")
    );
    let cancel = command(
        "order",
        "order.order.cancel.v1",
        json!({ "order_id": "NOCONFIRM-1" }),
    );
    assert_eq!(r.answer(&cancel, false), succeeded());
}

#[test]
fn the_shipped_rules_cover_the_return_saga() {
    let r = rules(vec![], true);
    let approve = |id: &str| {
        command(
            "returns",
            "return.returns.approve.v1",
            json!({ "return_id": id }),
        )
    };
    assert_eq!(r.answer(&approve("r-1"), false), succeeded());
    assert_eq!(
        r.answer(&approve("DENY-1"), false),
        refused("the return is not approved")
    );
    let refund = command(
        "payment",
        "return.payment.refund.v1",
        json!({ "amount_cents": 5 }),
    );
    assert_eq!(
        r.answer(&refund, false),
        result(json!({ "refund_id": "rf-saga-1:a-step" }))
    );
    let restock = command(
        "inventory",
        "return.inventory.restock.v1",
        json!({ "items": [{ "sku": "SKU-1" }, { "sku": "DAMAGED-7" }] }),
    );
    assert_eq!(
        r.answer(&restock, false),
        failed("cannot restock DAMAGED-7")
    );
    assert_eq!(r.answer(&restock, true), succeeded());
}
