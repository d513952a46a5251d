"""Reports built only from saved artifacts: plots (`plots`) and run comparison (`runs`)."""
