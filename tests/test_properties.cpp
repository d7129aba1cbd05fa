#include <catch2/catch.hpp>

#include "reshard/error.hpp"
#include "reshard/mesh.hpp"
#include "reshard/type.hpp"

using namespace reshard;
