//! Applies validated [`ListParams`] to a sea-orm select: the ORDER BY (ties
//! broken by id), the keyset condition after a cursor, and OFFSET/LIMIT
//! (one row more than the page, to know whether another follows).

use sea_orm::{
    ColumnTrait, EntityTrait, Order, QueryFilter, QueryOrder, QuerySelect, Select,
    sea_query::{Condition, SimpleExpr, Value},
};

use crate::domain::paging::{CursorValue, ListParams};

fn to_value(value: &CursorValue) -> Value {
    match value {
        CursorValue::Time(time) => Value::from(*time),
        CursorValue::Text(text) => Value::from(text.clone()),
    }
}

fn beyond<C: ColumnTrait>(column: C, descending: bool, value: Value) -> SimpleExpr {
    if descending { column.lt(value) } else { column.gt(value) }
}

/// Orders, positions and limits `select` per `params`. `column_of` maps a
/// sort field name to its column.
pub fn apply<E: EntityTrait>(
    select: Select<E>,
    params: &ListParams,
    column_of: impl Fn(&str) -> E::Column,
    id: E::Column,
) -> Select<E> {
    let mut select = select;
    for key in &params.sort {
        let order = if key.descending { Order::Desc } else { Order::Asc };
        select = select.order_by(column_of(key.field.name), order);
    }
    select = select.order_by(id, Order::Asc);
    if let Some(cursor) = &params.after {
        // (k1 > v1) OR (k1 = v1 AND k2 > v2) OR ... OR (all equal AND id > last id)
        let mut any = Condition::any();
        let mut equal_so_far = Condition::all();
        for (key, value) in params.sort.iter().zip(&cursor.values) {
            let column = column_of(key.field.name);
            any = any.add(
                equal_so_far
                    .clone()
                    .add(beyond(column, key.descending, to_value(value))),
            );
            equal_so_far = equal_so_far.add(column.eq(to_value(value)));
        }
        any = any.add(equal_so_far.add(id.gt(cursor.id)));
        select = select.filter(any);
        // Implied by the condition above, but in this form the database
        // seeks its index to the cursor instead of scanning up to it.
        if let (Some(key), Some(value)) = (params.sort.first(), cursor.values.first()) {
            let column = column_of(key.field.name);
            let value = to_value(value);
            select = select.filter(if key.descending {
                column.lte(value)
            } else {
                column.gte(value)
            });
        }
    }
    select.offset(params.offset).limit(params.limit + 1)
}
