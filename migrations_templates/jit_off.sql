--! JIT off for a statement trigger's statements over several rows, and the
--! caller's setting given back after them. A session plans each of those
--! statements once, for the transition tables of its first call: after a
--! 100,000-row statement, JIT compiled the plan again on every later small
--! one (265 ms for a 3-row insert, 1.6 ms without), and the bulk statement
--! itself ran 14% faster without it. Set here rather than with SET on the
--! function, which costs every call a configuration change, a one-row
--! statement included (6.3-7.3k instructions of a one-row statement).
{{variable}} := current_setting('jit');
PERFORM set_config('jit', 'off', true);
