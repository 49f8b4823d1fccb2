"""Code the services share and a bot does not need: configuration (``config``), the trading-session clock
(``sessions``), the condition table (``conditions``), the NBBO (``nbbo``), Redis users (``acl``) and the services'
Prometheus metrics (``service_metrics``). What a bot embeds too lives in :mod:`orderflow_client`."""
