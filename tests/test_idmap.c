/*  Tests for dpool_idmap: values by increasing id, found and taken by index, in id order
    when walked, and the stragglers (an old id held while many newer ones come and go)
    still found after they moved aside. */
#include "dpool_idmap.h"

#include <criterion/criterion.h>
#include <dpool/errors.h>

// A distinct non-NULL value per id.
static void *
s_value(uint64_t id)
{
    return (void *)(uintptr_t)(id * 16 + 8);
}

typedef struct {
    uint64_t ids[64];
    size_t count;
} s_seen_t;

static void
s_record(void *arg, uint64_t id, void *value)
{
    s_seen_t *seen = arg;
    cr_assert_lt(seen->count, 64);
    cr_assert_eq(value, s_value(id), "id %llu walks with its own value", (unsigned long long)id);
    seen->ids[seen->count++] = id;
}

Test(idmap, ids_added_in_order_are_found_taken_and_refused_out_of_order)
{
    dpool_idmap_t *map = dpool_idmap_new();
    cr_assert_not_null(map);
    for (uint64_t id = 1; id <= 3000; id++)
        cr_assert_eq(dpool_idmap_insert(map, id, s_value(id)), DPOOL_OK);
    cr_assert_eq(dpool_idmap_size(map), 3000);
    cr_assert_eq(dpool_idmap_insert(map, 3000, s_value(3000)), DPOOL_ERR_INVALID);
    cr_assert_eq(dpool_idmap_insert(map, 17, s_value(17)), DPOOL_ERR_INVALID);
    cr_assert_eq(dpool_idmap_insert(map, 3001, NULL), DPOOL_ERR_INVALID);
    cr_assert_eq(dpool_idmap_lookup(map, 2999), s_value(2999));
    cr_assert_null(dpool_idmap_lookup(map, 3001));
    cr_assert_null(dpool_idmap_lookup(map, 0));
    cr_assert_eq(dpool_idmap_take(map, 1500), s_value(1500));
    cr_assert_null(dpool_idmap_take(map, 1500), "taken once");
    cr_assert_null(dpool_idmap_lookup(map, 1500));
    cr_assert_eq(dpool_idmap_size(map), 2999);
    for (uint64_t id = 1; id <= 3000; id++)
        if (id != 1500)
            cr_assert_eq(dpool_idmap_take(map, id), s_value(id), "id %llu", (unsigned long long)id);
    cr_assert_eq(dpool_idmap_size(map), 0);
    cr_assert_eq(dpool_idmap_insert(map, 5000, s_value(5000)), DPOOL_OK, "a gap after emptying");
    cr_assert_eq(dpool_idmap_take(map, 5000), s_value(5000));
    dpool_idmap_destroy(&map);
    cr_assert_null(map);
}

Test(idmap, a_straggler_stays_found_while_a_million_newer_ids_come_and_go)
{
    dpool_idmap_t *map = dpool_idmap_new();
    cr_assert_eq(dpool_idmap_insert(map, 1, s_value(1)), DPOOL_OK);
    cr_assert_eq(dpool_idmap_insert(map, 2, s_value(2)), DPOOL_OK);
    // Ids 3.. come and go, at most 100 held at once; 1 and 2 stay.
    for (uint64_t id = 3; id <= 1000000; id++) {
        cr_assert_eq(dpool_idmap_insert(map, id, s_value(id)), DPOOL_OK);
        if (id > 102)
            cr_assert_eq(dpool_idmap_take(map, id - 100), s_value(id - 100));
    }
    cr_assert_eq(dpool_idmap_size(map), 102);
    cr_assert_eq(dpool_idmap_lookup(map, 1), s_value(1), "the straggler is still found");
    cr_assert_eq(dpool_idmap_lookup(map, 999950), s_value(999950));
    // In id order: the stragglers first, then the ring.
    s_seen_t seen = {0};
    dpool_idmap_take(map, 999990);
    for (uint64_t id = 999901; id <= 999989; id++)
        dpool_idmap_take(map, id);
    dpool_idmap_each(map, false, s_record, &seen);
    cr_assert_eq(seen.count, 12);
    uint64_t expected[] = {1,      2,      999991, 999992, 999993, 999994,
                           999995, 999996, 999997, 999998, 999999, 1000000};
    for (size_t i = 0; i < 12; i++)
        cr_assert_eq(seen.ids[i], expected[i], "position %zu", i);
    cr_assert_eq(dpool_idmap_take_first(map), s_value(1));
    cr_assert_eq(dpool_idmap_take_first(map), s_value(2));
    cr_assert_eq(dpool_idmap_take_first(map), s_value(999991));
    cr_assert_eq(dpool_idmap_size(map), 9);
    dpool_idmap_destroy(&map);
}

Test(idmap, a_walk_that_takes_empties_the_map_in_order)
{
    dpool_idmap_t *map = dpool_idmap_new();
    for (uint64_t id = 10; id <= 40; id += 3)
        dpool_idmap_insert(map, id, s_value(id));
    s_seen_t seen = {0};
    dpool_idmap_each(map, true, s_record, &seen);
    cr_assert_eq(seen.count, 11);
    for (size_t i = 0; i < seen.count; i++)
        cr_assert_eq(seen.ids[i], 10 + 3 * i);
    cr_assert_eq(dpool_idmap_size(map), 0);
    cr_assert_null(dpool_idmap_take_first(map));
    cr_assert_eq(dpool_idmap_insert(map, 41, s_value(41)), DPOOL_OK);
    cr_assert_eq(dpool_idmap_lookup(map, 41), s_value(41));
    dpool_idmap_destroy(&map);
}
