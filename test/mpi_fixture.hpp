// The Boost.Test global fixture of the MPI tests: MPI is started before the first test case
// and finalised after the last, on every rank.
#pragma once

#include <boost/test/unit_test.hpp>

#include "mptrain/parallel/comm.hpp"

struct MpiFixture {
  MpiFixture()
      : session(&boost::unit_test::framework::master_test_suite().argc,
                &boost::unit_test::framework::master_test_suite().argv) {}
  mptrain::MpiSession session;
};
BOOST_TEST_GLOBAL_FIXTURE(MpiFixture);
