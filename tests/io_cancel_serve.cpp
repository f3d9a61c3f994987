#include "cancel_serve.hpp"
TEST_CASE("placeholder") {}
