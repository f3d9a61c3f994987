// Every synchronisation primitive: #include <spindle/sync.hpp>.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <spindle/sync/barrier.hpp>
#include <spindle/sync/channel.hpp>
#include <spindle/sync/condition.hpp>
#include <spindle/sync/event.hpp>
#include <spindle/sync/lock.hpp>
#include <spindle/sync/queue.hpp>
#include <spindle/sync/semaphore.hpp>
