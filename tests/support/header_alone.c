typedef int qp_header_alone_test; /* a translation unit must declare something */
