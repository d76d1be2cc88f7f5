"""``lorakit eval``: strided perplexity of a base model and its LoRAs on identical token windows.

Modules, in the order a run uses them:

- :mod:`.sources`     read a dataset (.txt, a folder of .txt, JSON/JSONL rows) and fingerprint it;
- :mod:`.documents`   tokenize it into documents (ids, and labels for formatted rows);
- :mod:`.windows`     the strided windows of the transformers documentation, planned once;
- :mod:`.configs`     ``--compare base,A,A:0.5,A+B`` -> configurations and how to activate them;
- :mod:`.scoring`     the summed negative log-likelihood of every window, batched;
- :mod:`.records`     the result cache and the evaluations log (CSV under the lorakit home);
- :mod:`.report`      the comparison table and the ``--json`` rows;
- :mod:`.runner`      ties them together for the command.

Keep this file free of imports: ``lorakit --help`` must not import torch.
"""
