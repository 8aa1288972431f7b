//! Table definitions shared by both backends: only types that SQLite and
//! PostgreSQL represent alike (BigInt, Integer, Text, Timestamp).

diesel::table! {
    elements (symbol) {
        symbol -> Text,
        name -> Text,
        atomic_number -> Integer,
        class -> Text,
    }
}

diesel::table! {
    forms (code) {
        code -> Text,
        description -> Text,
    }
}

diesel::table! {
    element_forms (element, form) {
        element -> Text,
        form -> Text,
        element_mass_ppm -> BigInt,
        formula -> Text,
    }
}

diesel::table! {
    depots (id) {
        id -> BigInt,
        code -> Text,
        name -> Text,
        region -> Text,
        status -> Text,
        capacity_g -> BigInt,
        max_drawdown_g_per_day -> BigInt,
        on_hand_g -> BigInt,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    stockpiles (id) {
        id -> BigInt,
        depot_id -> BigInt,
        element -> Text,
        form -> Text,
        grade -> Text,
        on_hand_g -> BigInt,
        reserved_g -> BigInt,
        head_hash -> Text,
        entry_count -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// Shipments per depot and UTC day (by `occurred_at`), for the drawdown
    /// check: migration 2026-12-01-000003.
    depot_daily_shipments (depot_id, day) {
        depot_id -> BigInt,
        day -> Timestamp,
        shipped_g -> BigInt,
    }
}

diesel::table! {
    /// Each entry's balance, entry count and highest sequence in its
    /// stockpile's (occurred_at, sequence) order, for balances as of an
    /// instant: migration 2026-12-02-000001.
    ledger_balances (stockpile_id, occurred_at, sequence) {
        stockpile_id -> BigInt,
        occurred_at -> Timestamp,
        sequence -> BigInt,
        balance_g -> BigInt,
        entries -> BigInt,
        max_sequence -> BigInt,
    }
}

diesel::table! {
    ledger_head (id) {
        id -> Integer,
        last_sequence -> BigInt,
    }
}

diesel::table! {
    ledger_entries (sequence) {
        sequence -> BigInt,
        stockpile_id -> BigInt,
        kind -> Text,
        quantity_g -> BigInt,
        balance_after_g -> BigInt,
        occurred_at -> Timestamp,
        recorded_at -> Timestamp,
        actor -> Text,
        reference -> Nullable<Text>,
        counterparty -> Nullable<Text>,
        origin_country -> Nullable<Text>,
        unit_price_micros -> Nullable<BigInt>,
        currency -> Nullable<Text>,
        note -> Nullable<Text>,
        idempotency_key -> Text,
        movement_id -> Text,
        order_id -> Nullable<BigInt>,
        prev_hash -> Text,
        hash -> Text,
    }
}

diesel::table! {
    idempotency_records (subject, idempotency_key) {
        subject -> Text,
        idempotency_key -> Text,
        request_hash -> Text,
        response_status -> Integer,
        response_body -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    depot_history (depot_id, version) {
        depot_id -> BigInt,
        version -> BigInt,
        status -> Text,
        capacity_g -> BigInt,
        max_drawdown_g_per_day -> BigInt,
        changed_at -> Timestamp,
        changed_by -> Text,
    }
}

diesel::table! {
    period_locks (id) {
        id -> BigInt,
        locked_before -> Timestamp,
        reason -> Text,
        set_by -> Text,
        created_at -> Timestamp,
        after_sequence -> BigInt,
    }
}

diesel::table! {
    element_policies (element) {
        element -> Text,
        reserve_floor_g -> Nullable<BigInt>,
        consumption_g_per_year -> Nullable<BigInt>,
        limited_drawdown_max_g -> Nullable<BigInt>,
        limited_drawdown_max_days -> Nullable<Integer>,
        test_sale_max_g -> Nullable<BigInt>,
        version -> BigInt,
        updated_at -> Timestamp,
        updated_by -> Text,
    }
}

diesel::table! {
    element_policy_history (element, version) {
        element -> Text,
        version -> BigInt,
        reserve_floor_g -> Nullable<BigInt>,
        consumption_g_per_year -> Nullable<BigInt>,
        limited_drawdown_max_g -> Nullable<BigInt>,
        limited_drawdown_max_days -> Nullable<Integer>,
        test_sale_max_g -> Nullable<BigInt>,
        changed_at -> Timestamp,
        changed_by -> Text,
    }
}

diesel::table! {
    ceilings (element, fiscal_year) {
        element -> Text,
        fiscal_year -> Integer,
        acquire_max_g -> BigInt,
        dispose_max_g -> BigInt,
        updated_at -> Timestamp,
        updated_by -> Text,
    }
}

diesel::table! {
    buyers (code) {
        code -> Text,
        name -> Text,
        country -> Text,
        created_at -> Timestamp,
        created_by -> Text,
    }
}

diesel::table! {
    release_orders (id) {
        id -> BigInt,
        kind -> Text,
        status -> Text,
        element -> Text,
        form -> Text,
        grade -> Text,
        quantity_g -> BigInt,
        method -> Text,
        authority -> Text,
        reason -> Text,
        counterparty -> Nullable<Text>,
        emergency_finding -> Nullable<Text>,
        law -> Nullable<Text>,
        fiscal_year -> Nullable<Integer>,
        premium_percent -> Nullable<Text>,
        return_due -> Nullable<Date>,
        late_premium_percent_per_day -> Nullable<Text>,
        released_g -> BigInt,
        returned_g -> BigInt,
        proposed_by -> Text,
        approved_by -> Nullable<Text>,
        rule_id -> Nullable<BigInt>,
        expected_completion -> Nullable<Date>,
        closes_at -> Nullable<Timestamp>,
        minimum_price_micros -> Nullable<BigInt>,
        currency -> Nullable<Text>,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    order_allocations (order_id, depot_id) {
        order_id -> BigInt,
        depot_id -> BigInt,
        stockpile_id -> Nullable<BigInt>,
        quantity_g -> BigInt,
        reserved_g -> BigInt,
        released_g -> BigInt,
        deliver_by -> Date,
    }
}

diesel::table! {
    order_transitions (order_id, seq) {
        order_id -> BigInt,
        seq -> Integer,
        at -> Timestamp,
        actor -> Text,
        from_status -> Nullable<Text>,
        to_status -> Text,
        note -> Nullable<Text>,
    }
}

diesel::table! {
    bids (id) {
        id -> BigInt,
        order_id -> BigInt,
        buyer -> Text,
        quantity_g -> BigInt,
        price_micros -> BigInt,
        placed_at -> Timestamp,
    }
}

diesel::table! {
    awards (order_id, bid_id) {
        order_id -> BigInt,
        bid_id -> BigInt,
        buyer -> Text,
        quantity_g -> BigInt,
        price_micros -> BigInt,
        delivered_g -> BigInt,
    }
}

diesel::table! {
    import_flows (id) {
        id -> BigInt,
        element -> Text,
        form -> Text,
        origin_country -> Text,
        hs_code -> Text,
        period_start -> Date,
        period_end -> Date,
        quantity_g -> BigInt,
        source -> Text,
        external_id -> Text,
        content_hash -> Text,
        recorded_at -> Timestamp,
        recorded_by -> Text,
    }
}

diesel::table! {
    job_claims (job, slot) {
        job -> Text,
        slot -> Timestamp,
        claimed_by -> Text,
        claimed_at -> Timestamp,
        finished_at -> Timestamp,
        outcome -> Text,
    }
}

diesel::table! {
    release_rules (id) {
        id -> BigInt,
        element -> Text,
        origin_countries -> Nullable<Text>,
        window_days -> Integer,
        baseline_days -> Integer,
        drop_threshold_percent -> Text,
        consecutive_breaches -> Integer,
        cooldown_days -> Integer,
        coverage_fraction -> Text,
        cap_g -> BigInt,
        floor_g -> Nullable<BigInt>,
        floor_days_of_cover -> Nullable<Text>,
        order_kind -> Text,
        form -> Nullable<Text>,
        grade -> Nullable<Text>,
        order_template -> Text,
        enabled -> Bool,
        consecutive -> Integer,
        armed -> Bool,
        last_fired_at -> Nullable<Timestamp>,
        evaluation_count -> BigInt,
        version -> BigInt,
        created_at -> Timestamp,
        created_by -> Text,
        updated_at -> Timestamp,
        updated_by -> Text,
        deleted_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    release_rule_history (rule_id, version) {
        rule_id -> BigInt,
        version -> BigInt,
        change -> Text,
        changed_at -> Timestamp,
        changed_by -> Text,
        before -> Nullable<Text>,
        after -> Nullable<Text>,
    }
}

diesel::table! {
    rule_evaluations (id) {
        id -> BigInt,
        rule_id -> BigInt,
        rule_version -> BigInt,
        at -> Timestamp,
        trigger -> Text,
        slot -> Nullable<Timestamp>,
        triggered_by -> Text,
        data_horizon -> Nullable<Date>,
        window_start -> Nullable<Date>,
        window_end -> Nullable<Date>,
        baseline_start -> Nullable<Date>,
        baseline_end -> Nullable<Date>,
        window_kg_per_day -> Nullable<Text>,
        baseline_kg_per_day -> Nullable<Text>,
        drop_percent -> Nullable<Text>,
        breach -> Bool,
        consecutive -> Integer,
        decision -> Text,
        reason -> Text,
        detail -> Text,
        sizing -> Nullable<Text>,
        proposed_g -> Nullable<BigInt>,
        order_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    counts (id) {
        id -> BigInt,
        depot_id -> BigInt,
        element -> Text,
        form -> Text,
        grade -> Text,
        counted_g -> BigInt,
        book_g -> BigInt,
        variance_g -> BigInt,
        variance_percent -> Nullable<Text>,
        tolerance_g -> BigInt,
        flagged -> Bool,
        counted_at -> Timestamp,
        method -> Text,
        note -> Nullable<Text>,
        counted_by -> Text,
        recorded_at -> Timestamp,
        status -> Text,
        decided_by -> Nullable<Text>,
        decided_at -> Nullable<Timestamp>,
        decision_note -> Nullable<Text>,
        adjustment_sequence -> Nullable<BigInt>,
    }
}

diesel::table! {
    audit_trail (id) {
        id -> BigInt,
        at -> Timestamp,
        subject -> Text,
        roles -> Text,
        request_id -> Text,
        method -> Text,
        route -> Text,
        path -> Text,
        status -> Integer,
        problem_type -> Nullable<Text>,
        idempotency_key -> Nullable<Text>,
    }
}

diesel::table! {
    checkpoints (id) {
        id -> BigInt,
        created_at -> Timestamp,
        created_by -> Text,
        last_sequence -> BigInt,
        stockpiles -> BigInt,
        merkle_root -> Text,
        prev_hash -> Text,
        hash -> Text,
        public_key -> Text,
        signature -> Text,
    }
}

diesel::table! {
    checkpoint_heads (checkpoint_id, leaf_index) {
        checkpoint_id -> BigInt,
        leaf_index -> BigInt,
        stockpile_id -> BigInt,
        last_sequence -> BigInt,
        entry_count -> BigInt,
        balance_g -> BigInt,
        head_hash -> Text,
    }
}

diesel::table! {
    audit_reports (id) {
        id -> BigInt,
        period_start -> Timestamp,
        period_end -> Timestamp,
        schedule -> Text,
        generated_at -> Timestamp,
        generated_by -> Text,
        body -> Text,
        body_sha256 -> Text,
        public_key -> Text,
        signature -> Text,
    }
}

diesel::joinable!(stockpiles -> depots (depot_id));
diesel::joinable!(depot_daily_shipments -> depots (depot_id));
diesel::joinable!(ledger_balances -> stockpiles (stockpile_id));
diesel::joinable!(depot_history -> depots (depot_id));
diesel::joinable!(order_allocations -> depots (depot_id));
diesel::joinable!(order_allocations -> release_orders (order_id));
diesel::joinable!(ledger_entries -> stockpiles (stockpile_id));

diesel::joinable!(counts -> depots (depot_id));

diesel::joinable!(checkpoint_heads -> checkpoints (checkpoint_id));

diesel::table! {
    events (id) {
        id -> BigInt,
        after_sequence -> Nullable<BigInt>,
        sub -> Nullable<BigInt>,
        kind -> Text,
        element -> Nullable<Text>,
        depot -> Nullable<Text>,
        subject -> Nullable<Text>,
        at -> Timestamp,
        data -> Text,
    }
}

diesel::table! {
    event_tickets (ticket_hash) {
        ticket_hash -> Text,
        subject -> Text,
        roles -> Text,
        depots -> Nullable<Text>,
        token_expires_at -> Timestamp,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    webhooks (id) {
        id -> BigInt,
        url -> Text,
        event_types -> Text,
        description -> Nullable<Text>,
        secret -> Text,
        enabled -> Bool,
        version -> BigInt,
        created_at -> Timestamp,
        created_by -> Text,
        updated_at -> Timestamp,
        updated_by -> Text,
        deleted_at -> Nullable<Timestamp>,
        starts_after -> Text,
    }
}

diesel::table! {
    webhook_cursor (id) {
        id -> Integer,
        position -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> BigInt,
        delivery_id -> Text,
        webhook_id -> BigInt,
        event_position -> Text,
        event_type -> Text,
        payload -> Text,
        status -> Text,
        attempts -> Integer,
        created_at -> Timestamp,
        give_up_at -> Timestamp,
        next_attempt_at -> Nullable<Timestamp>,
        leased_until -> Nullable<Timestamp>,
        delivered_at -> Nullable<Timestamp>,
        lease_token -> Nullable<Text>,
        redelivered_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> BigInt,
        delivery_id -> BigInt,
        attempt -> Integer,
        started_at -> Timestamp,
        duration_ms -> BigInt,
        status_code -> Nullable<Integer>,
        error -> Nullable<Text>,
        redelivery -> Bool,
    }
}

diesel::joinable!(webhook_deliveries -> webhooks (webhook_id));
diesel::joinable!(webhook_attempts -> webhook_deliveries (delivery_id));

diesel::allow_tables_to_appear_in_same_query!(
    elements,
    forms,
    element_forms,
    depots,
    stockpiles,
    depot_daily_shipments,
    ledger_balances,
    ledger_head,
    ledger_entries,
    idempotency_records,
    period_locks,
    depot_history,
    element_policies,
    element_policy_history,
    ceilings,
    buyers,
    release_orders,
    order_allocations,
    order_transitions,
    bids,
    awards,
    import_flows,
    job_claims,
    release_rules,
    release_rule_history,
    rule_evaluations,
    counts,
    audit_trail,
    checkpoints,
    checkpoint_heads,
    audit_reports,
    events,
    event_tickets,
    webhooks,
    webhook_cursor,
    webhook_deliveries,
    webhook_attempts,
);
