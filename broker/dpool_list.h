/*  dpool_list: an intrusive, circular, doubly linked list.

    czmq's zlistx gives O(1) removal too, but allocates a node per item; the broker
    links every queued task, and an allocation per task on the hot path is what this
    avoids. A list head is a dpool_link_t whose next/prev point at itself when empty;
    an item embeds a dpool_link_t and is recovered with DPOOL_CONTAINER_OF. */
#ifndef DPOOL_LIST_H
#define DPOOL_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct dpool_link {
    struct dpool_link *prev;
    struct dpool_link *next;
} dpool_link_t;

#define DPOOL_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

// Makes head an empty list, or marks an item's link as "in no list".
static inline void
dpool_list_init(dpool_link_t *head)
{
    head->prev = head->next = head;
}

static inline bool
dpool_list_empty(const dpool_link_t *head)
{
    return head->next == head;
}

// True when an item's link (initialised with dpool_list_init) is in some list.
static inline bool
dpool_list_linked(const dpool_link_t *link)
{
    return link->next != link;
}

static inline void
dpool_list_push_back(dpool_link_t *head, dpool_link_t *item)
{
    item->prev = head->prev;
    item->next = head;
    head->prev->next = item;
    head->prev = item;
}

static inline void
dpool_list_push_front(dpool_link_t *head, dpool_link_t *item)
{
    dpool_list_push_back(head->next, item);
}

// Unlinks item and leaves it "in no list". Harmless on an unlinked item.
static inline void
dpool_list_remove(dpool_link_t *item)
{
    item->prev->next = item->next;
    item->next->prev = item->prev;
    dpool_list_init(item);
}

// The first item, or NULL when empty.
static inline dpool_link_t *
dpool_list_front(const dpool_link_t *head)
{
    return dpool_list_empty(head) ? NULL : head->next;
}

#endif
