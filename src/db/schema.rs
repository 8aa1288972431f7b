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

diesel::joinable!(stockpiles -> depots (depot_id));
diesel::joinable!(depot_history -> depots (depot_id));
diesel::joinable!(ledger_entries -> stockpiles (stockpile_id));

diesel::allow_tables_to_appear_in_same_query!(
    elements,
    forms,
    element_forms,
    depots,
    stockpiles,
    ledger_head,
    ledger_entries,
    idempotency_records,
    period_locks,
    depot_history,
);
