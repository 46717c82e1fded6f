from study.data.synthetic import main

main()
