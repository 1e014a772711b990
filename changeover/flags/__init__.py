"""changeover.flags: release flags evaluated in-process, over OFREP, and by the router.

``evaluate`` is the pure evaluator (``compile_flag`` once, ``CompiledFlag.evaluate`` per
call, microseconds); the Flag spec itself is ``changeover.spec.flag``.
"""
